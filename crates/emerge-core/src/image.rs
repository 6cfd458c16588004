//! Turning model-space images (values in [−1, 1]) into pixels and back, the one place this
//! happens, and trajectories into animated GIFs.

use burn::tensor::{Device, Tensor, TensorData};

use crate::error::EmergeError;

/// Maps x ∈ [−1, 1] to a byte: round((x + 1)/2 · 255), clamped (DDPM's data scaling, inverted).
pub fn to_byte(x: f32) -> u8 {
    ((x + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8
}

/// Maps a byte to model space: x = b/127.5 − 1, the inverse of [`to_byte`].
pub fn from_byte(b: u8) -> f32 {
    b as f32 / 127.5 - 1.0
}

/// One u8 image (row-major, C×H×W) as a `[1, C, H, W]` model-space tensor; an error that
/// names both sizes when it is not the model's shape.
pub fn image_tensor(
    pixels: &[u8],
    [channels, height, width]: [usize; 3],
    device: &Device,
) -> Result<Tensor<4>, EmergeError> {
    let expected = channels * height * width;
    if pixels.len() != expected {
        return Err(EmergeError::InvalidArgument(format!(
            "the image has {} values but the model takes {channels}×{height}×{width} = {expected}",
            pixels.len()
        )));
    }
    let values = pixels.iter().map(|&b| from_byte(b)).collect::<Vec<_>>();
    Ok(Tensor::from_data(
        TensorData::new(values, [1, channels, height, width]),
        device,
    ))
}

/// Encodes RGBA frames of one size as a looping animated GIF: `delay_ms` between frames, the
/// last one held for two seconds.
pub fn gif_bytes(
    frames: &[Vec<u8>],
    width: usize,
    height: usize,
    delay_ms: u16,
) -> Result<Vec<u8>, EmergeError> {
    let invalid = |e: String| EmergeError::InvalidArgument(format!("GIF: {e}"));
    if frames.is_empty() {
        return Err(invalid("no frames to write".into()));
    }
    let (w, h) = (
        u16::try_from(width).map_err(|_| invalid(format!("width {width} is over 65535")))?,
        u16::try_from(height).map_err(|_| invalid(format!("height {height} is over 65535")))?,
    );
    let mut out = Vec::new();
    {
        let mut encoder =
            gif::Encoder::new(&mut out, w, h, &[]).map_err(|e| invalid(e.to_string()))?;
        encoder
            .set_repeat(gif::Repeat::Infinite)
            .map_err(|e| invalid(e.to_string()))?;
        for (i, rgba) in frames.iter().enumerate() {
            if rgba.len() != width * height * 4 {
                return Err(invalid(format!(
                    "frame {i} has {} bytes, not {width}×{height}×4",
                    rgba.len()
                )));
            }
            let mut rgba = rgba.clone();
            let mut frame = gif::Frame::from_rgba_speed(w, h, &mut rgba, 10);
            let hold = if i + 1 == frames.len() {
                2000
            } else {
                delay_ms
            };
            frame.delay = hold / 10; // GIF delays are in hundredths of a second
            encoder
                .write_frame(&frame)
                .map_err(|e| invalid(e.to_string()))?;
        }
    }
    Ok(out)
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
    rgba_grid_part(values, shape, 0, shape[0], columns, gap)
}

/// [`rgba_grid`] of a slice of a larger batch: the batch's B images are images `first..first +
/// B` of a run of `total`, drawn by one of several workers. The grid is the whole run's, the
/// cells of the other images transparent, so that the slices' grids of one run combine by
/// laying their opaque pixels over one another.
pub fn rgba_grid_part(
    values: &[f32],
    shape: [usize; 4],
    first: usize,
    total: usize,
    columns: usize,
    gap: usize,
) -> (Vec<u8>, usize, usize) {
    let [batch, channels, height, width] = shape;
    let total = total.max(first + batch);
    let columns = columns.clamp(1, total.max(1));
    let rows = total.div_ceil(columns);
    let grid_w = columns * width + (columns + 1) * gap;
    let grid_h = rows * height + (rows + 1) * gap;
    let mut rgba = vec![0u8; grid_w * grid_h * 4];
    for px in rgba.chunks_exact_mut(4) {
        px.copy_from_slice(&[24, 24, 28, 255]);
    }
    let plane = height * width;
    let origin = |cell: usize| {
        let (row, col) = (cell / columns, cell % columns);
        (gap + row * (height + gap), gap + col * (width + gap))
    };
    for cell in (0..first).chain(first + batch..total) {
        let (y0, x0) = origin(cell);
        for y in y0..y0 + height {
            rgba[(y * grid_w + x0) * 4..(y * grid_w + x0 + width) * 4].fill(0);
        }
    }
    for b in 0..batch {
        let (y0, x0) = origin(first + b);
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

/// The image in the top-left cell of an RGBA grid `grid_width` pixels wide that [`rgba_grid`]
/// laid out with `gap`, its images `width` × `height`: image 0 of the batch, RGBA.
pub fn first_cell(
    rgba: &[u8],
    grid_width: usize,
    [width, height]: [usize; 2],
    gap: usize,
) -> Result<Vec<u8>, EmergeError> {
    let end = ((gap + height).saturating_sub(1) * grid_width + gap + width) * 4;
    if grid_width < gap + width || rgba.len() < end || height == 0 {
        return Err(EmergeError::InvalidArgument(format!(
            "{} bytes of a grid {grid_width} pixels wide hold no {width}×{height} image",
            rgba.len()
        )));
    }
    Ok((gap..gap + height)
        .flat_map(|y| &rgba[(y * grid_width + gap) * 4..(y * grid_width + gap + width) * 4])
        .copied()
        .collect())
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
    fn an_image_of_the_wrong_size_is_named() {
        let device = Device::flex();
        let x = image_tensor(&[0, 255, 0, 255], [1, 2, 2], &device).unwrap();
        assert_eq!(
            x.to_data().try_to_vec::<f32>().unwrap(),
            vec![-1.0, 1.0, -1.0, 1.0]
        );
        let err = image_tensor(&[0; 10], [1, 28, 28], &device).unwrap_err();
        assert!(
            err.to_string()
                .contains("10 values but the model takes 1×28×28 = 784"),
            "{err}"
        );
    }

    #[test]
    fn gif_frames_decode_back_to_their_pixels() {
        let frames: Vec<Vec<u8>> = [0u8, 128, 255]
            .iter()
            .map(|&v| [v, v, v, 255].repeat(6))
            .collect();
        let bytes = gif_bytes(&frames, 3, 2, 100).unwrap();
        let mut options = gif::DecodeOptions::new();
        options.set_color_output(gif::ColorOutput::RGBA);
        let mut decoder = options.read_info(bytes.as_slice()).unwrap();
        let mut decoded = Vec::new();
        while let Some(frame) = decoder.read_next_frame().unwrap() {
            decoded.push((frame.buffer.to_vec(), frame.delay));
        }
        assert_eq!(decoded.len(), 3);
        for ((pixels, _), expected) in decoded.iter().zip(&frames) {
            assert_eq!(pixels, expected);
        }
        assert_eq!(decoded[0].1, 10);
        assert_eq!(decoded[2].1, 200, "the last frame is held");
        let err = gif_bytes(&[vec![0; 5]], 3, 2, 100).unwrap_err();
        assert!(err.to_string().contains("frame 0 has 5 bytes"), "{err}");
        assert!(gif_bytes(&[], 3, 2, 100).is_err());
    }

    #[test]
    fn grid_places_each_image() {
        // Two 1×1 grey images side by side with a 1-pixel gap: width 5, height 3.
        let (rgba, w, h) = rgba_grid(&[1.0, -1.0], [2, 1, 1, 1], 2, 1);
        assert_eq!((w, h), (5, 3));
        assert_eq!(&rgba[(w + 1) * 4..(w + 1) * 4 + 4], &[255, 255, 255, 255]);
        assert_eq!(&rgba[(w + 3) * 4..(w + 3) * 4 + 4], &[0, 0, 0, 255]);
        // A slice's grid is the whole run's: its own cells opaque, the others' transparent, and
        // the slices' opaque pixels laid over one another make the whole grid.
        let values = [1.0, -1.0, 0.0];
        let (whole, _, _) = rgba_grid(&values, [3, 1, 1, 1], 2, 1);
        let (head, _, _) = rgba_grid_part(&values[..1], [1, 1, 1, 1], 0, 3, 2, 1);
        let (tail, _, _) = rgba_grid_part(&values[1..], [2, 1, 1, 1], 1, 3, 2, 1);
        assert_eq!((head.len(), tail.len()), (whole.len(), whole.len()));
        assert_eq!(&head[(w + 3) * 4 + 3], &0, "image 1 is not the head's");
        let mut merged = head.clone();
        for (px, over) in merged.chunks_exact_mut(4).zip(tail.chunks_exact(4)) {
            if over[3] != 0 {
                px.copy_from_slice(over);
            }
        }
        assert_eq!(merged, whole);
        // Image 0 comes back out of the grid.
        let (rgba, w, _) = rgba_grid(&[1.0, -1.0], [2, 1, 1, 1], 2, 1);
        assert_eq!(
            first_cell(&rgba, w, [1, 1], 1).unwrap(),
            vec![255, 255, 255, 255]
        );
        assert!(first_cell(&rgba[..8], w, [1, 1], 1).is_err());
        // Colour channels stay separate.
        let (rgba, _, _) = rgba_grid(&[1.0, -1.0, 0.0], [1, 3, 1, 1], 1, 0);
        assert_eq!(rgba, vec![255, 0, 128, 255]);
    }
}
