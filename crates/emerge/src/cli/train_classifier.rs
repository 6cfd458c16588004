//! `emerge train-classifier`: the MNIST classifier `eval` scores samples with.

use anyhow::Result;

use super::args::TrainClassifierArgs;

pub fn run(args: TrainClassifierArgs) -> Result<()> {
    let (model, accuracy) = crate::classifier::train(&args.data, args.epochs, args.seed)?;
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    model.save(&args.out)?;
    println!(
        "classifier test accuracy {:.2} % → {}",
        100.0 * accuracy,
        args.out.display()
    );
    Ok(())
}
