//! Look of every chart: size, the bundled font, a colour-blind-safe palette.
//!
//! The font (DejaVu Sans, Bitstream Vera license, `assets/`) is compiled in and registered
//! with plotters' `ab_glyph` text renderer, so charts look the same on a laptop, a CI box or
//! a cluster node without system fonts.

use std::sync::Once;

use plotters::style::{FontStyle, RGBColor};

/// Chart size in pixels (readable at 1200x800).
pub const SIZE: (u32, u32) = (1200, 800);
/// The font family name charts use.
pub const FONT: &str = "sans-serif";

static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Registers the bundled font once per process.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_err() {
            tracing::error!("the bundled font could not be registered; text will be missing");
        }
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, FONT_BYTES);
    });
}

/// Okabe-Ito palette: distinguishable with the common colour-vision deficiencies.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(230, 159, 0),   // orange
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(240, 228, 66),  // yellow
    RGBColor(0, 0, 0),       // black
];

/// The `i`-th series colour.
pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Grey for shading (warmup) and reference lines.
pub const GREY: RGBColor = RGBColor(150, 150, 150);
