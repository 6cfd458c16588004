//! MNIST in its original IDX format (LeCun et al.), gzip-compressed or plain: reading the
//! data set from a directory the user names, and writing generated digits back as IDX.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

/// IDX magic numbers: 0x0000 0803 (u8, 3 dimensions) for images, 0x0000 0801 for labels.
const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// Images (row-major u8, 0 = background) and their labels.
#[derive(Debug, Clone)]
pub struct Digits {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub rows: usize,
    pub cols: usize,
}

impl Digits {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let size = self.rows * self.cols;
        &self.images[i * size..(i + 1) * size]
    }
}

/// Which half of MNIST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// Loads one split from `dir`, which holds `train-images-idx3-ubyte(.gz)` and its siblings.
pub fn load(dir: &Path, split: Split) -> Result<Digits> {
    let images_path = find(dir, &format!("{}-images-idx3-ubyte", split.prefix()))?;
    let labels_path = find(dir, &format!("{}-labels-idx1-ubyte", split.prefix()))?;
    let (images, dims) = read_idx(&images_path, IMAGES_MAGIC)?;
    let (labels, label_dims) = read_idx(&labels_path, LABELS_MAGIC)?;
    let [count, rows, cols] = dims[..] else {
        bail!(
            "{}: expected 3 dimensions, found {}",
            images_path.display(),
            dims.len()
        )
    };
    ensure!(
        label_dims[0] == count,
        "{} holds {count} images but {} holds {} labels",
        images_path.display(),
        labels_path.display(),
        label_dims[0]
    );
    if let Some(bad) = labels.iter().find(|&&l| l > 9) {
        bail!("{}: label {bad} is not a digit", labels_path.display());
    }
    Ok(Digits {
        images,
        labels,
        rows,
        cols,
    })
}

/// The file `name.gz` or `name` in `dir`.
fn find(dir: &Path, name: &str) -> Result<PathBuf> {
    ensure!(
        dir.is_dir(),
        "MNIST directory '{}' does not exist",
        dir.display()
    );
    [format!("{name}.gz"), name.to_string()]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "'{}' has no {name}.gz (nor {name}): is it the MNIST directory?",
                dir.display()
            )
        })
}

/// Reads an IDX file of unsigned bytes: big-endian magic, one u32 per dimension, then the data.
pub fn read_idx(path: &Path, expected_magic: u32) -> Result<(Vec<u8>, Vec<usize>)> {
    let raw = std::fs::read(path).with_context(|| format!("cannot read '{}'", path.display()))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| {
                format!("'{}' is not a valid gzip file (truncated?)", path.display())
            })?;
        out
    } else {
        raw
    };
    parse_idx(&bytes, expected_magic).with_context(|| format!("'{}'", path.display()))
}

/// Parses IDX bytes, checking the magic number and that the data is exactly as long as the
/// dimensions say.
pub fn parse_idx(bytes: &[u8], expected_magic: u32) -> Result<(Vec<u8>, Vec<usize>)> {
    ensure!(
        bytes.len() >= 4,
        "too short to be an IDX file ({} bytes)",
        bytes.len()
    );
    let magic = u32::from_be_bytes(bytes[0..4].try_into()?);
    ensure!(
        magic == expected_magic,
        "wrong IDX magic number 0x{magic:08x} (expected 0x{expected_magic:08x}): not an MNIST {} file",
        if expected_magic == IMAGES_MAGIC {
            "images"
        } else {
            "labels"
        }
    );
    let ndim = (magic & 0xff) as usize;
    let header = 4 + 4 * ndim;
    ensure!(bytes.len() >= header, "truncated IDX header");
    let dims: Vec<usize> = (0..ndim)
        .map(|i| {
            u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize
        })
        .collect();
    let expected = dims.iter().product::<usize>();
    let data = &bytes[header..];
    ensure!(
        data.len() == expected,
        "IDX data is {} bytes but its dimensions {dims:?} need {expected}: the file is truncated or damaged",
        data.len()
    );
    Ok((data.to_vec(), dims))
}

/// Encodes u8 images `[count, rows, cols]` as an (uncompressed) IDX3 file.
pub fn encode_idx_images(images: &[u8], count: usize, rows: usize, cols: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + images.len());
    out.extend_from_slice(&IMAGES_MAGIC.to_be_bytes());
    for d in [count, rows, cols] {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(images);
    out
}

/// Encodes labels as an IDX1 file.
pub fn encode_idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = LABELS_MAGIC.to_be_bytes().to_vec();
    out.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    out.extend_from_slice(labels);
    out
}

/// `per_class` test images of each digit, in IDX format, for the forward-process view.
pub fn write_bundled_digits(mnist_dir: &Path, out: &Path, per_class: usize) -> Result<()> {
    let test = crate::mnist::load(mnist_dir, crate::mnist::Split::Test)?;
    let mut chosen = Vec::new();
    for digit in 0..10u8 {
        chosen.extend(
            (0..test.len())
                .filter(|&i| test.labels[i] == digit)
                .take(per_class),
        );
    }
    let images: Vec<u8> = chosen
        .iter()
        .flat_map(|&i| test.image(i).iter().copied())
        .collect();
    let labels: Vec<u8> = chosen.iter().map(|&i| test.labels[i]).collect();
    std::fs::create_dir_all(out)?;
    emerge_core::atomic_file::write_atomically(
        &out.join("digits-images.idx"),
        &crate::mnist::encode_idx_images(&images, chosen.len(), test.rows, test.cols),
    )?;
    emerge_core::atomic_file::write_atomically(
        &out.join("digits-labels.idx"),
        &crate::mnist::encode_idx_labels(&labels),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn labels_idx(labels: &[u8]) -> Vec<u8> {
        encode_idx_labels(labels)
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("emerge-mnist-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_a_gzip_split_it_wrote_itself() {
        let dir = temp_dir("ok");
        let images: Vec<u8> = (0..3 * 4 * 5).map(|i| i as u8).collect();
        std::fs::write(
            dir.join("t10k-images-idx3-ubyte.gz"),
            gzip(&encode_idx_images(&images, 3, 4, 5)),
        )
        .unwrap();
        std::fs::write(dir.join("t10k-labels-idx1-ubyte"), labels_idx(&[7, 0, 9])).unwrap();
        let digits = load(&dir, Split::Test).unwrap();
        assert_eq!((digits.len(), digits.rows, digits.cols), (3, 4, 5));
        assert_eq!(digits.labels, vec![7, 0, 9]);
        assert_eq!(digits.image(1), &images[20..40]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_files_give_clear_errors() {
        let dir = temp_dir("bad");
        let err = format!("{:#}", load(&dir, Split::Train).unwrap_err());
        assert!(err.contains("train-images-idx3-ubyte.gz"), "{err}");
        assert!(
            format!("{:#}", load(&dir.join("nope"), Split::Train).unwrap_err())
                .contains("does not exist")
        );

        let images = encode_idx_images(&[0; 2 * 2 * 2], 2, 2, 2);
        // Wrong magic: a labels file where images belong.
        let err = parse_idx(&labels_idx(&[1, 2]), IMAGES_MAGIC)
            .unwrap_err()
            .to_string();
        assert!(err.contains("wrong IDX magic"), "{err}");
        // Truncated data.
        let err = parse_idx(&images[..images.len() - 3], IMAGES_MAGIC)
            .unwrap_err()
            .to_string();
        assert!(err.contains("truncated"), "{err}");
        assert!(
            parse_idx(&[0, 0], IMAGES_MAGIC)
                .unwrap_err()
                .to_string()
                .contains("too short")
        );
        // A truncated gzip stream.
        let gz = gzip(&images);
        std::fs::write(dir.join("train-images-idx3-ubyte.gz"), &gz[..gz.len() / 2]).unwrap();
        std::fs::write(
            dir.join("train-labels-idx1-ubyte.gz"),
            gzip(&labels_idx(&[1, 2])),
        )
        .unwrap();
        let err = format!("{:#}", load(&dir, Split::Train).unwrap_err());
        assert!(err.contains("gzip") || err.contains("truncated"), "{err}");
        // Counts that disagree.
        std::fs::write(dir.join("train-images-idx3-ubyte.gz"), gzip(&images)).unwrap();
        std::fs::write(
            dir.join("train-labels-idx1-ubyte.gz"),
            gzip(&labels_idx(&[1, 2, 3])),
        )
        .unwrap();
        assert!(format!("{:#}", load(&dir, Split::Train).unwrap_err()).contains("3 labels"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
