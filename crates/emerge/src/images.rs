//! Writing images: PNG grids, animated GIF trajectories and MNIST IDX files.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use emerge_core::image::{gif_bytes, rgba_grid, to_byte};

use crate::sample::Images;

/// Encodes RGBA pixels as PNG bytes.
pub fn png_bytes(rgba: &[u8], width: usize, height: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width as u32, height as u32);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.write_header()?.write_image_data(rgba)?;
    }
    Ok(out)
}

/// Reads a PNG of `size` × `size` pixels as the model's input: u8, `channels` planes (C×H×W).
/// Grey images fill every colour plane; colour images become grey (ITU-R BT.601 luma) for a
/// one-channel model. Transparent pixels count as black, the page's background.
pub fn read_png(path: &Path, channels: usize, size: usize) -> Result<Vec<u8>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder
        .read_info()
        .with_context(|| format!("{} is not a PNG image", path.display()))?;
    let mut buffer = vec![
        0;
        reader
            .output_buffer_size()
            .context("the PNG is too large")?
    ];
    let info = reader
        .next_frame(&mut buffer)
        .with_context(|| format!("{} could not be decoded", path.display()))?;
    let (width, height) = (info.width as usize, info.height as usize);
    anyhow::ensure!(
        width == size && height == size,
        "{} is {width}×{height} pixels but the model takes {size}×{size}",
        path.display()
    );
    let per_pixel = info.color_type.samples();
    let rgb = |p: &[u8]| -> [f32; 3] {
        let alpha = match per_pixel {
            2 => p[1] as f32 / 255.0,
            4 => p[3] as f32 / 255.0,
            _ => 1.0,
        };
        let [r, g, b] = if per_pixel >= 3 {
            [p[0], p[1], p[2]]
        } else {
            [p[0]; 3]
        };
        [r as f32 * alpha, g as f32 * alpha, b as f32 * alpha]
    };
    let pixels: Vec<[f32; 3]> = buffer[..info.buffer_size()]
        .chunks_exact(per_pixel)
        .map(rgb)
        .collect();
    // Plane c holds channel c of every pixel (the last colour repeated past 3); one channel: luma.
    let value = |p: &[f32; 3], c: usize| match channels {
        1 => 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2],
        _ => p[c.min(2)],
    };
    Ok((0..channels)
        .flat_map(|c| pixels.iter().map(move |p| value(p, c).round() as u8))
        .collect())
}

/// Writes a batch as a PNG grid with `columns` images per row.
pub fn write_png_grid(path: &Path, images: &Images, columns: usize) -> Result<()> {
    let (rgba, w, h) = rgba_grid(&images.values, images.shape, columns, 2);
    emerge_core::atomic_file::write_atomically(path, &png_bytes(&rgba, w, h)?)?;
    Ok(())
}

/// Frames a trajectory GIF holds at most.
pub const GIF_FRAMES: usize = 60;

/// Whether step `step` (1-based) of a `total`-step run is one of at most `frames` frames spread
/// evenly over the run: every ⌈total/frames⌉-th step, and always the last.
pub fn keeps_frame(step: usize, total: usize, frames: usize) -> bool {
    let every = total.div_ceil(frames.max(1)).max(1);
    step.is_multiple_of(every) || step == total
}

/// Writes frames (each a batch of the same shape) as a looping animated GIF of grids, the last
/// frame held for two seconds.
pub fn write_gif(
    path: &Path,
    frames: &[Images],
    columns: usize,
    frame_delay_ms: u16,
) -> Result<()> {
    let first = frames.first().context("no frames to write")?;
    let (_, width, height) = rgba_grid(&first.values, first.shape, columns, 2);
    let grids: Vec<Vec<u8>> = frames
        .iter()
        .map(|images| rgba_grid(&images.values, images.shape, columns, 2).0)
        .collect();
    let bytes = gif_bytes(&grids, width, height, frame_delay_ms)?;
    emerge_core::atomic_file::write_atomically(path, &bytes)?;
    Ok(())
}

/// An MNIST-format IDX3 file (u8, 0 = black) written batch by batch, so that memory stays flat
/// in the number of images; a temporary file is renamed into place once every image is in.
pub struct IdxWriter {
    path: PathBuf,
    tmp: PathBuf,
    file: BufWriter<File>,
    /// [channels, rows, cols] of every image.
    image: [usize; 3],
    expected: usize,
    written: usize,
}

impl IdxWriter {
    /// Starts `path` for `count` images of `image` = [channels, rows, cols]; only greyscale
    /// images (one channel) fit the format.
    pub fn create(path: &Path, count: usize, image: [usize; 3]) -> Result<Self> {
        let [channels, rows, cols] = image;
        anyhow::ensure!(
            channels == 1,
            "IDX output holds greyscale images; this model makes {channels} channels"
        );
        let name = path.file_name().context("the output is not a file path")?;
        let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
        let file =
            File::create(&tmp).with_context(|| format!("cannot create '{}'", tmp.display()))?;
        let mut file = BufWriter::new(file);
        file.write_all(&crate::mnist::encode_idx_images(&[], count, rows, cols))?;
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            file,
            image,
            expected: count,
            written: 0,
        })
    }

    /// Appends a batch of the file's image shape.
    pub fn append(&mut self, images: &Images) -> Result<()> {
        let [count, image @ ..] = images.shape;
        anyhow::ensure!(
            image == self.image,
            "images of shape {image:?} do not fit an IDX file of {:?}",
            self.image
        );
        let bytes: Vec<u8> = images.values.iter().map(|&v| to_byte(v)).collect();
        self.file
            .write_all(&bytes)
            .with_context(|| format!("cannot write '{}'", self.tmp.display()))?;
        self.written += count;
        Ok(())
    }

    /// Checks that every image came, then moves the file into place.
    pub fn finish(self) -> Result<()> {
        anyhow::ensure!(
            self.written == self.expected,
            "{} of {} images were written",
            self.written,
            self.expected
        );
        let file = self.file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&self.tmp, &self.path).with_context(|| {
            format!(
                "cannot move '{}' to '{}'",
                self.tmp.display(),
                self.path.display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trajectory_frames_are_spread_evenly_over_the_whole_run() {
        for (total, frames) in [(1000, 60), (50, 60), (130, 60), (7, 3)] {
            let kept: Vec<usize> = (1..=total)
                .filter(|&s| keeps_frame(s, total, frames))
                .collect();
            assert!(kept.len() <= frames + 1, "{total}: {} frames", kept.len());
            assert_eq!(
                *kept.last().unwrap(),
                total,
                "the final image is the last frame"
            );
            let every = total.div_ceil(frames);
            let mut previous = 0;
            for &step in &kept {
                assert!(
                    step - previous <= every,
                    "{total}: a gap from {previous} to {step}"
                );
                previous = step;
            }
        }
    }
}
