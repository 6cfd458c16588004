//! The Fréchet distance between two sets of feature vectors, each summarised by a Gaussian
//! (Heusel et al. 2017, FID):  d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^{1/2}).

/// Mean and covariance (unbiased) of `rows` vectors of width `dim`, in f64.
pub fn moments(features: &[f32], dim: usize) -> (Vec<f64>, Vec<f64>) {
    let n = features.len() / dim;
    let mut mean = vec![0.0; dim];
    for row in features.chunks_exact(dim) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64 / n as f64;
        }
    }
    let mut cov = vec![0.0; dim * dim];
    for row in features.chunks_exact(dim) {
        let centred: Vec<f64> = row.iter().zip(&mean).map(|(&v, m)| v as f64 - m).collect();
        for i in 0..dim {
            for j in i..dim {
                cov[i * dim + j] += centred[i] * centred[j];
            }
        }
    }
    for i in 0..dim {
        for j in i..dim {
            let v = cov[i * dim + j] / (n as f64 - 1.0).max(1.0);
            cov[i * dim + j] = v;
            cov[j * dim + i] = v;
        }
    }
    (mean, cov)
}

/// Eigenvalues and eigenvectors (columns) of a symmetric matrix, by cyclic Jacobi rotations.
pub fn symmetric_eigen(matrix: &[f64], dim: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = matrix.to_vec();
    let mut v = vec![0.0; dim * dim];
    for i in 0..dim {
        v[i * dim + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..dim)
            .flat_map(|i| (0..dim).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * dim + j].powi(2))
            .sum();
        if off < 1e-22 * (1.0 + (0..dim).map(|i| a[i * dim + i].powi(2)).sum::<f64>()) {
            break;
        }
        for p in 0..dim {
            for q in p + 1..dim {
                let apq = a[p * dim + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                // rotation angle that zeroes a[p][q]
                let theta = (a[q * dim + q] - a[p * dim + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let (c, s) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
                for k in 0..dim {
                    let (akp, akq) = (a[k * dim + p], a[k * dim + q]);
                    a[k * dim + p] = c * akp - s * akq;
                    a[k * dim + q] = s * akp + c * akq;
                }
                for k in 0..dim {
                    let (apk, aqk) = (a[p * dim + k], a[q * dim + k]);
                    a[p * dim + k] = c * apk - s * aqk;
                    a[q * dim + k] = s * apk + c * aqk;
                }
                for k in 0..dim {
                    let (vkp, vkq) = (v[k * dim + p], v[k * dim + q]);
                    v[k * dim + p] = c * vkp - s * vkq;
                    v[k * dim + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..dim).map(|i| a[i * dim + i]).collect(), v)
}

fn matmul(a: &[f64], b: &[f64], dim: usize) -> Vec<f64> {
    let mut out = vec![0.0; dim * dim];
    for i in 0..dim {
        for k in 0..dim {
            let aik = a[i * dim + k];
            for j in 0..dim {
                out[i * dim + j] += aik * b[k * dim + j];
            }
        }
    }
    out
}

/// Tr((Σ₁ Σ₂)^{1/2}) = Σᵢ √λᵢ(Σ₁^{1/2} Σ₂ Σ₁^{1/2}), the symmetric form of the same eigenvalues.
fn trace_sqrt_product(s1: &[f64], s2: &[f64], dim: usize) -> f64 {
    let (values, vectors) = symmetric_eigen(s1, dim);
    // Σ₁^{1/2} = V diag(√λ) Vᵀ
    let mut root = vec![0.0; dim * dim];
    for i in 0..dim {
        for j in 0..dim {
            root[i * dim + j] = (0..dim)
                .map(|k| vectors[i * dim + k] * values[k].max(0.0).sqrt() * vectors[j * dim + k])
                .sum();
        }
    }
    let m = matmul(&matmul(&root, s2, dim), &root, dim);
    let sym: Vec<f64> = (0..dim * dim)
        .map(|idx| 0.5 * (m[idx] + m[(idx % dim) * dim + idx / dim]))
        .collect();
    symmetric_eigen(&sym, dim)
        .0
        .iter()
        .map(|l| l.max(0.0).sqrt())
        .sum()
}

/// d² between two feature sets of width `dim`.
pub fn frechet_distance(a: &[f32], b: &[f32], dim: usize) -> f64 {
    let (m1, s1) = moments(a, dim);
    let (m2, s2) = moments(b, dim);
    let mean_term: f64 = m1.iter().zip(&m2).map(|(x, y)| (x - y).powi(2)).sum();
    let trace: f64 = (0..dim).map(|i| s1[i * dim + i] + s2[i * dim + i]).sum();
    (mean_term + trace - 2.0 * trace_sqrt_product(&s1, &s2, dim)).max(0.0)
}

#[cfg(test)]
mod tests {
    use emerge_core::GaussianNoise;

    use super::*;

    #[test]
    fn jacobi_finds_known_eigenvalues() {
        let (mut values, _) = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
        values.sort_by(f64::total_cmp);
        assert!((values[0] - 1.0).abs() < 1e-12 && (values[1] - 3.0).abs() < 1e-12);
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
