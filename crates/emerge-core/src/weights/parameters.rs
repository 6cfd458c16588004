//! A network's float parameters as flat tensors in visiting order, and the network with them
//! replaced: how weights move between copies without going through a file (the EMA's blend, a
//! read-back from the GPU).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;

use crate::error::EmergeError;
use crate::unet::UNet;

struct Collect(Vec<Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.val().reshape([-1]));
    }
}

/// Every float parameter of `unet`, flattened, in visiting order.
pub fn flattened(unet: &UNet) -> Vec<Tensor<1>> {
    let mut collect = Collect(Vec::new());
    unet.visit(&mut collect);
    collect.0
}

struct Replace(std::vec::IntoIter<Tensor<1>>);

impl ModuleMapper for Replace {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let value = self
            .0
            .next()
            .expect("counted against the parameters before mapping");
        param.map(|old| value.reshape(old.shape()))
    }
}

/// `unet` with its float parameters replaced by `values` (flattened, in visiting order, on the
/// network's device, as [`flattened`] gives them).
pub fn replaced(unet: UNet, values: Vec<Tensor<1>>) -> Result<UNet, EmergeError> {
    let expected = flattened(&unet);
    let sizes_match = values.len() == expected.len()
        && values
            .iter()
            .zip(&expected)
            .all(|(value, param)| value.dims() == param.dims());
    if !sizes_match {
        return Err(EmergeError::InvalidArgument(format!(
            "{} values do not fit the network's {} parameters",
            values.len(),
            expected.len()
        )));
    }
    Ok(unet.map(&mut Replace(values.into_iter())))
}
