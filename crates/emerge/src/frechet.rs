//! The Fréchet distance between two sets of feature vectors, each summarised by a Gaussian
//! (Heusel et al. 2017, FID):  d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^{1/2}).
//! The linear algebra is nalgebra's (symmetric eigendecomposition, products).

use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// Mean and covariance (unbiased) of the rows of `features`, vectors of width `dim`, in f64.
pub fn moments(features: &[f32], dim: usize) -> (DVector<f64>, DMatrix<f64>) {
    let rows = DMatrix::from_row_iterator(
        features.len() / dim,
        dim,
        features.iter().map(|&v| f64::from(v)),
    );
    let n = rows.nrows() as f64;
    let mean = rows.row_mean().transpose();
    let centred = DMatrix::from_fn(rows.nrows(), dim, |i, j| rows[(i, j)] - mean[j]);
    // Σ = Xᶜᵀ Xᶜ / (n − 1)
    let covariance = centred.tr_mul(&centred) / (n - 1.0).max(1.0);
    (mean, covariance)
}

/// A² = S for a symmetric positive semi-definite S: V diag(√max(λ, 0)) Vᵀ.
fn symmetric_sqrt(matrix: &DMatrix<f64>) -> DMatrix<f64> {
    let eigen = SymmetricEigen::new(matrix.clone());
    let roots = eigen.eigenvalues.map(|l| l.max(0.0).sqrt());
    &eigen.eigenvectors * DMatrix::from_diagonal(&roots) * eigen.eigenvectors.transpose()
}

/// Tr((Σ₁ Σ₂)^{1/2}) = Σᵢ √λᵢ(Σ₁^{1/2} Σ₂ Σ₁^{1/2}), the symmetric form of the same eigenvalues.
fn trace_sqrt_product(s1: &DMatrix<f64>, s2: &DMatrix<f64>) -> f64 {
    let root = symmetric_sqrt(s1);
    let product = &root * s2 * &root;
    // Symmetrise away rounding before the symmetric eigensolver.
    let symmetric = (&product + product.transpose()) * 0.5;
    SymmetricEigen::new(symmetric)
        .eigenvalues
        .iter()
        .map(|l| l.max(0.0).sqrt())
        .sum()
}

/// d² between two feature sets of width `dim`.
pub fn frechet_distance(a: &[f32], b: &[f32], dim: usize) -> f64 {
    let (m1, s1) = moments(a, dim);
    let (m2, s2) = moments(b, dim);
    let mean_term = (m1 - m2).norm_squared();
    let trace = s1.trace() + s2.trace();
    (mean_term + trace - 2.0 * trace_sqrt_product(&s1, &s2)).max(0.0)
}

#[cfg(test)]
mod tests {
    use emerge_core::GaussianNoise;

    use super::*;

    #[test]
    fn moments_are_the_mean_and_the_unbiased_covariance() {
        // Rows (1, 2), (3, 6): mean (2, 4), covariance [[2, 4], [4, 8]] (divided by n − 1 = 1).
        let (mean, cov) = moments(&[1.0, 2.0, 3.0, 6.0], 2);
        assert_eq!(mean.as_slice(), &[2.0, 4.0]);
        assert_eq!(cov, DMatrix::from_row_slice(2, 2, &[2.0, 4.0, 4.0, 8.0]));
    }

    #[test]
    fn trace_of_the_root_of_a_product_matches_the_closed_form() {
        // Σ₁ = diag(1, 4), Σ₂ = diag(9, 1): (Σ₁Σ₂)^{1/2} = diag(3, 2), trace 5; and for a
        // rotated pair sharing eigenvectors the trace is unchanged.
        let s1 = DMatrix::from_diagonal(&DVector::from_vec(vec![1.0, 4.0]));
        let s2 = DMatrix::from_diagonal(&DVector::from_vec(vec![9.0, 1.0]));
        assert!((trace_sqrt_product(&s1, &s2) - 5.0).abs() < 1e-12);
        let (c, s) = (0.6f64, 0.8f64);
        let r = DMatrix::from_row_slice(2, 2, &[c, -s, s, c]);
        let rotate = |m: &DMatrix<f64>| &r * m * r.transpose();
        assert!((trace_sqrt_product(&rotate(&s1), &rotate(&s2)) - 5.0).abs() < 1e-12);
    }

    #[test]
    fn distance_matches_the_closed_form_for_diagonal_gaussians() {
        // N(0, I) vs N(μ, 4I) in 3 dimensions: d² = ‖μ‖² + Σ(1 + 4 − 2·2) = ‖μ‖² + 3.
        let mut rng = GaussianNoise::new(1);
        let n = 40_000;
        let a: Vec<f32> = rng.normals(n * 3);
        let b: Vec<f32> = rng
            .normals(n * 3)
            .iter()
            .enumerate()
            .map(|(i, &z)| 2.0 * z + [1.0, -2.0, 0.5][i % 3])
            .collect();
        let d = frechet_distance(&a, &b, 3);
        assert!((d - (1.0 + 4.0 + 0.25 + 3.0)).abs() < 0.15, "{d}");
        assert!(frechet_distance(&a, &a, 3) < 1e-9);
    }
}
