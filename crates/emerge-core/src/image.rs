//! Turning model-space images (values in [−1, 1]) into pixels, the one place this happens.

/// Maps x ∈ [−1, 1] to a byte: round((x + 1)/2 · 255), clamped (DDPM's data scaling, inverted).
pub fn to_byte(x: f32) -> u8 {
    ((x + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8
}

/// Maps a byte to model space: x = b/127.5 − 1, the inverse of [`to_byte`].
pub fn from_byte(b: u8) -> f32 {
    b as f32 / 127.5 - 1.0
}

/// Lays a `[B, C, H, W]` batch (C = 1 or 3) out as an RGBA grid with `columns` images per row
/// and a `gap`-pixel dark border, ready for a canvas `ImageData` or a PNG. Returns the pixels,
/// the width and the height.
pub fn rgba_grid(
    values: &[f32],
    shape: [usize; 4],
    columns: usize,
    gap: usize,
) -> (Vec<u8>, usize, usize) {
    let [batch, channels, height, width] = shape;
    let columns = columns.clamp(1, batch.max(1));
    let rows = batch.div_ceil(columns);
    let grid_w = columns * width + (columns + 1) * gap;
    let grid_h = rows * height + (rows + 1) * gap;
    let mut rgba = vec![0u8; grid_w * grid_h * 4];
    for px in rgba.chunks_exact_mut(4) {
        px.copy_from_slice(&[24, 24, 28, 255]);
    }
    let plane = height * width;
    for b in 0..batch {
        let (row, col) = (b / columns, b % columns);
        let (y0, x0) = (gap + row * (height + gap), gap + col * (width + gap));
        for y in 0..height {
            for x in 0..width {
                let at = |c: usize| values[(b * channels + c) * plane + y * width + x];
                let (r, g, bl) = if channels >= 3 {
                    (at(0), at(1), at(2))
                } else {
                    (at(0), at(0), at(0))
                };
                let o = ((y0 + y) * grid_w + x0 + x) * 4;
                rgba[o..o + 4].copy_from_slice(&[to_byte(r), to_byte(g), to_byte(bl), 255]);
            }
        }
    }
    (rgba, grid_w, grid_h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_mapping_round_trips_and_clamps() {
        assert_eq!(to_byte(-1.0), 0);
        assert_eq!(to_byte(1.0), 255);
        assert_eq!(to_byte(5.0), 255);
        assert_eq!(to_byte(-3.0), 0);
        for b in [0u8, 1, 100, 254, 255] {
            assert_eq!(to_byte(from_byte(b)), b);
        }
    }

    #[test]
    fn grid_places_each_image() {
        // Two 1×1 grey images side by side with a 1-pixel gap: width 5, height 3.
        let (rgba, w, h) = rgba_grid(&[1.0, -1.0], [2, 1, 1, 1], 2, 1);
        assert_eq!((w, h), (5, 3));
        assert_eq!(&rgba[(w + 1) * 4..(w + 1) * 4 + 4], &[255, 255, 255, 255]);
        assert_eq!(&rgba[(w + 3) * 4..(w + 3) * 4 + 4], &[0, 0, 0, 255]);
        // Colour channels stay separate.
        let (rgba, _, _) = rgba_grid(&[1.0, -1.0, 0.0], [1, 3, 1, 1], 1, 0);
        assert_eq!(rgba, vec![255, 0, 128, 255]);
    }
}
