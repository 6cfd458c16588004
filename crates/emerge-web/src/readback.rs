//! Reading results back from the device: always asynchronous (a synchronous read panics on
//! WebGPU), many tensors in one transaction.

use burn::tensor::{Tensor, Transaction};
use emerge_core::EmergeError;

/// The f32 values of each tensor, in order, read in one asynchronous transaction.
pub async fn read_values<const D: usize>(
    tensors: Vec<Tensor<D>>,
) -> Result<Vec<Vec<f32>>, EmergeError> {
    let count = tensors.len();
    let transaction = tensors
        .into_iter()
        .fold(Transaction::default(), |t, tensor| t.register(tensor));
    let data = transaction.execute_async().await.map_err(|e| {
        EmergeError::InvalidArgument(format!("reading the result from the device failed: {e:?}"))
    })?;
    if data.len() != count {
        return Err(EmergeError::InvalidArgument(format!(
            "the device returned {} results for {count} asked",
            data.len()
        )));
    }
    data.into_iter()
        .map(|d| {
            d.try_into_vec::<f32>().map_err(|e| {
                EmergeError::InvalidArgument(format!("unexpected data from the device: {e:?}"))
            })
        })
        .collect()
}
