//! Portable seeded Gaussian noise, drawn on the host.
//!
//! Sampling must give the same images from the same seed on every backend (Flex natively, Flex in
//! wasm, WebGPU), so the noise never comes from a backend's own random numbers: it is drawn here,
//! from a fixed algorithm (xoshiro256++ seeded through SplitMix64, Box–Muller in f64), and uploaded.

/// A seeded stream of standard normal f32 values, identical on every platform. Its state
/// serialises, so a training run can resume the exact stream.
///
/// Written here rather than taken from `rand`/`rand_distr` on purpose: it is small (xoshiro256++
/// and Box–Muller, a few lines each, with its output pinned and its moments tested below), and pinning the
/// exact algorithm keeps every seed's images the same across platforms and dependency updates,
/// which the samplers' "same seed, same images" promise and the browser–CLI tests rely on.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GaussianNoise {
    state: [u64; 4],
    spare: Option<f64>,
}

/// SplitMix64's output function: a bijective mix of 64 bits.
fn splitmix64_mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// SplitMix64's increment (the golden ratio in 64 bits).
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl GaussianNoise {
    pub fn new(seed: u64) -> Self {
        // SplitMix64 expands the seed into the four words of xoshiro's state (its authors' advice).
        let mut x = seed;
        let mut splitmix = || {
            x = x.wrapping_add(GOLDEN_GAMMA);
            splitmix64_mix(x)
        };
        Self {
            state: [splitmix(), splitmix(), splitmix(), splitmix()],
            spare: None,
        }
    }

    /// The stream of image `image` of a run seeded `seed`: it depends on the pair only, so an
    /// image is the same whatever batch it is drawn in. The index is mixed into the seed
    /// (SplitMix64's bijective finaliser), so distinct images of a seed never share a stream.
    pub fn for_image(seed: u64, image: usize) -> Self {
        Self::new(seed ^ splitmix64_mix((image as u64).wrapping_add(GOLDEN_GAMMA)))
    }

    /// The next 64 random bits (xoshiro256++).
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform draw from [0, 1) with 53 random bits.
    pub fn next_uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `0..n` (n > 0), by rejection so that it is unbiased.
    pub fn next_below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "next_below needs n > 0");
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }

    /// One standard normal draw (Box–Muller: z = √(−2 ln u₁)·cos(2π u₂), and its sine twin).
    pub fn next_normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let u1 = 1.0 - self.next_uniform(); // in (0, 1], so ln is finite
        let u2 = self.next_uniform();
        let radius = (-2.0 * u1.ln()).sqrt();
        let angle = std::f64::consts::TAU * u2;
        self.spare = Some(radius * angle.sin());
        radius * angle.cos()
    }

    /// `len` standard normal draws as f32.
    pub fn normals(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.next_normal() as f32).collect()
    }
}

/// The noise of a run, one stream per image: image i of a run seeded s draws its x_T (or SDEdit's
/// ε) and then every step's z from [`GaussianNoise::for_image`]`(s, i)`, so its pixels do not
/// depend on the batch size or on how the run is split.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageNoise {
    streams: Vec<GaussianNoise>,
}

impl ImageNoise {
    /// The streams of images `images` (indices within the run) of a run seeded `seed`.
    pub fn new(seed: u64, images: std::ops::Range<usize>) -> Self {
        Self {
            streams: images
                .map(|image| GaussianNoise::for_image(seed, image))
                .collect(),
        }
    }

    /// Images served.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// `per_image` standard normal draws from each image's stream, image after image.
    pub fn normals(&mut self, per_image: usize) -> Vec<f32> {
        let mut values = Vec::with_capacity(per_image * self.streams.len());
        for stream in &mut self.streams {
            values.extend((0..per_image).map(|_| stream.next_normal() as f32));
        }
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_different_seed_different_stream() {
        assert_eq!(
            GaussianNoise::new(7).normals(100),
            GaussianNoise::new(7).normals(100)
        );
        assert_ne!(
            GaussianNoise::new(7).normals(100),
            GaussianNoise::new(8).normals(100)
        );
    }

    #[test]
    fn the_stream_is_pinned() {
        // Pinned so that a change of algorithm (which would change every shared link's images) is seen.
        let mut rng = GaussianNoise::new(0);
        assert_eq!(rng.next_u64(), 0x53175d61490b23df);
    }

    #[test]
    fn an_image_draws_the_same_noise_whatever_its_batch() {
        let whole = ImageNoise::new(5, 0..7).normals(3);
        let mut split = ImageNoise::new(5, 0..2).normals(3);
        split.extend(ImageNoise::new(5, 2..7).normals(3));
        assert_eq!(whole, split);
        assert_eq!(ImageNoise::new(5, 4..5).normals(3), whole[12..15]);
        // distinct images and distinct seeds give distinct streams
        assert_ne!(whole[0..3], whole[3..6]);
        assert_ne!(ImageNoise::new(6, 0..1).normals(3), whole[0..3]);
    }

    #[test]
    fn normals_have_unit_moments() {
        let draws = GaussianNoise::new(42).normals(200_000);
        let n = draws.len() as f64;
        let mean = draws.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = draws
            .iter()
            .map(|&x| (x as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        let kurt = draws
            .iter()
            .map(|&x| (x as f64 - mean).powi(4))
            .sum::<f64>()
            / n
            / var.powi(2);
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "var {var}");
        assert!((kurt - 3.0).abs() < 0.05, "kurtosis {kurt}");
    }

    #[test]
    fn next_below_stays_in_range_and_covers_it() {
        let mut rng = GaussianNoise::new(1);
        let mut seen = [0usize; 10];
        for _ in 0..10_000 {
            seen[rng.next_below(10) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800 && c < 1200), "{seen:?}");
    }
}
