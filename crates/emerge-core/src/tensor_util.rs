//! Small helpers for moving host values into tensors.

use burn::tensor::{Device, Tensor, TensorData};

use crate::error::EmergeError;
use crate::noise::{GaussianNoise, ImageNoise};

/// One value per sample as a `[B, 1, 1, 1]` tensor that broadcasts over images.
pub fn per_sample(values: Vec<f32>, device: &Device) -> Tensor<4> {
    let batch = values.len();
    Tensor::from_data(TensorData::new(values, [batch, 1, 1, 1]), device)
}

/// A tensor of standard normal draws from a portable host generator.
pub fn gaussian(noise: &mut GaussianNoise, shape: [usize; 4], device: &Device) -> Tensor<4> {
    let len = shape.iter().product();
    Tensor::from_data(TensorData::new(noise.normals(len), shape), device)
}

/// A `[B, C, H, W]` tensor of standard normal draws, image b from its own stream of `noise`.
pub fn image_gaussian(
    noise: &mut ImageNoise,
    shape: [usize; 4],
    device: &Device,
) -> Result<Tensor<4>, EmergeError> {
    let values = image_normals(noise, shape)?;
    Ok(Tensor::from_data(TensorData::new(values, shape), device))
}

/// The values of [`image_gaussian`], row-major.
pub fn image_normals(noise: &mut ImageNoise, shape: [usize; 4]) -> Result<Vec<f32>, EmergeError> {
    let [batch, channels, height, width] = shape;
    if batch != noise.len() {
        return Err(EmergeError::InvalidArgument(format!(
            "{} noise streams for a batch of {batch} images",
            noise.len()
        )));
    }
    Ok(noise.normals(channels * height * width))
}
