//! Typed access to a record batch's columns by name: the one way analyze reads the columns of
//! a segment ([`crate::reassemble`]) and of its own caches ([`crate::store::records`]).
//!
//! A column is `None` when it is absent (a segment older than the column reads as all null)
//! or of another type; [`at`] reads one value, `None` when null.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{
    Array, FixedSizeBinaryArray, Float64Array, Int64Array, RecordBatch, StringArray, UInt16Array, UInt32Array,
    UInt64Array,
};

/// A batch's column by name, cast with `cast`.
pub fn column<'b, T: 'static>(
    b: &'b RecordBatch,
    name: &str,
    cast: impl Fn(&'b dyn Array) -> Option<&'b T>,
) -> Option<&'b T> {
    b.column_by_name(name).and_then(|c| cast(c.as_ref()))
}

/// A `Utf8` column.
pub fn str_col<'b>(b: &'b RecordBatch, name: &str) -> Option<&'b StringArray> {
    column(b, name, |c| c.as_string_opt::<i32>())
}

/// A `UInt16` column.
pub fn u16_col<'b>(b: &'b RecordBatch, name: &str) -> Option<&'b UInt16Array> {
    column(b, name, |c| c.as_primitive_opt::<UInt16Type>())
}

/// A `UInt32` column.
pub fn u32_col<'b>(b: &'b RecordBatch, name: &str) -> Option<&'b UInt32Array> {
    column(b, name, |c| c.as_primitive_opt::<UInt32Type>())
}

/// A `UInt64` column.
pub fn u64_col<'b>(b: &'b RecordBatch, name: &str) -> Option<&'b UInt64Array> {
    column(b, name, |c| c.as_primitive_opt::<UInt64Type>())
}

/// An `Int64` column.
pub fn i64_col<'b>(b: &'b RecordBatch, name: &str) -> Option<&'b Int64Array> {
    column(b, name, |c| c.as_primitive_opt::<Int64Type>())
}

/// A `Float64` column.
pub fn f64_col<'b>(b: &'b RecordBatch, name: &str) -> Option<&'b Float64Array> {
    column(b, name, |c| c.as_primitive_opt::<Float64Type>())
}

/// A `FixedSizeBinary` column (text keys).
pub fn keys_col<'b>(b: &'b RecordBatch, name: &str) -> Option<&'b FixedSizeBinaryArray> {
    column(b, name, |c| c.as_fixed_size_binary_opt())
}

/// The value at `i` of an optional column, `None` when null or absent.
pub fn at<'a, A: Array, T>(a: Option<&'a A>, i: usize, value: impl Fn(&'a A, usize) -> T) -> Option<T> {
    a.filter(|a| a.is_valid(i)).map(|a| value(a, i))
}
