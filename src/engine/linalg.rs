//! Dense linear algebra on faer, one thread: the engine's matrix products ([`gemm`]: `C = alpha A B
//! + beta C`) and the spectrum summary of a square block ([`spectrum`]: the recurrent probes'
//! largest singular value and spectral radius of each block of `W_hh`).
//!
//! Why not ndarray's `general_mat_mul` (matrixmultiply): every layer's products in a training
//! step go through [`gemm`], and the recurrent layers make 2T small, sequential ones per step
//! (`(B, H) x (H, G*H)` forward, `(B, G*H) x (G*H, H)` backward). At those sizes matrixmultiply
//! repacks both operands inside every product (and allocates a buffer for it); measured on this
//! project's machine (AVX-512, one thread, f32) it reaches ~130-160 GFLOP/s there, faer ~200-230,
//! and faer keeps its packing memory per thread. A training step of the benchmark MLPs is
//! 12-35% faster on faer, an unprobed LSTM step 18-23% (`benches/README.md`). faer's safe API takes row- or
//! column-major slices, which is what every buffer of the engine is: a standard-layout array or
//! the transpose of one. Anything else (a view with gaps, which no layer passes today) falls back
//! to `general_mat_mul`, so the result never depends on the layout, only the speed.
//!
//! After each product, `simd::clear_upper_vector_state` (see there: faer's kernels leave the
//! vector registers in a state that slows the code after them 2-3x).
//!
//! Holds no state of its own (faer's GEMM keeps a packing buffer per thread, for the thread's
//! life) and depends only on `ndarray`, `faer`, [`Scalar`] and `simd`. Sequential (`Par::Seq`):
//! a run is one thread (the worker pool runs runs in parallel). Results are bit-identical from
//! run to run on one machine; faer chooses its kernels and blocking by the CPU (vector width,
//! cache sizes), so another CPU may round differently.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayBase, Data, DataMut, Ix2};

use super::simd::clear_upper_vector_state;
use super::Scalar;

/// The element types the engine hands to faer (f32, f64): each generic call, instantiated per type.
pub trait FaerScalar: Sized {
    /// `dst = alpha lhs rhs (+ dst if accumulate)`.
    fn faer_matmul(dst: MatMut<'_, Self>, accumulate: bool, lhs: MatRef<'_, Self>, rhs: MatRef<'_, Self>, alpha: Self);
}

macro_rules! faer_scalar {
    ($t:ty) => {
        impl FaerScalar for $t {
            #[inline]
            fn faer_matmul(dst: MatMut<'_, $t>, accumulate: bool, lhs: MatRef<'_, $t>, rhs: MatRef<'_, $t>, alpha: $t) {
                let accum = if accumulate { Accum::Add } else { Accum::Replace };
                matmul(dst, accum, lhs, rhs, alpha, Par::Seq);
            }
        }
    };
}
faer_scalar!(f32);
faer_scalar!(f64);

/// Largest singular value (spectral norm) and largest eigenvalue modulus (spectral radius) of the
/// square row-major `n x n` matrix `m`, in f64 (an f32 block is converted exactly): eigenvalues
/// only, no vectors. The block is first divided by its largest entry, so that `M^T M` can neither
/// overflow nor underflow, and the results multiplied back. sigma_max^2 is the largest eigenvalue
/// of `M^T M` (symmetric: about a third of an SVD's time at 128 x 128, and as accurate for the
/// largest value, whose absolute error is ~eps ||M||^2). Both NaN when `m` holds a non-finite
/// entry; sigma_max NaN if the symmetric solver fails; the radius falls back to
/// [`gelfand_radius`] if the eigenvalue iteration fails or returns a non-finite value.
pub fn spectrum<T: Scalar>(m: &[T], n: usize) -> (f64, f64) {
    if m.len() != n * n || m.iter().any(|v| !v.is_finite()) {
        return (f64::NAN, f64::NAN);
    }
    let scale = m.iter().fold(0.0f64, |a, v| a.max(v.f64().abs()));
    if scale == 0.0 {
        return (0.0, 0.0);
    }
    let a = Mat::<f64>::from_fn(n, n, |i, j| m[i * n + j].f64() / scale);
    let gram = a.transpose() * &a;
    let finite_max = |v: &[f64]| v.iter().try_fold(0.0f64, |acc, &x| x.is_finite().then(|| acc.max(x)));
    let sigma_max = match gram.self_adjoint_eigenvalues(Side::Lower) {
        Ok(v) => finite_max(&v).map_or(f64::NAN, |x| x.max(0.0).sqrt()),
        Err(_) => f64::NAN,
    };
    let moduli = a.eigenvalues().ok().map(|v| v.iter().map(|e| e.norm()).collect::<Vec<f64>>());
    let radius = match moduli.as_deref().and_then(finite_max) {
        Some(r) => r,
        None => gelfand_radius(a),
    };
    // faer's kernels leave the vector state that slows the loops after them (see `simd`).
    clear_upper_vector_state();
    (sigma_max * scale, radius * scale)
}

/// The spectral radius by Gelfand's formula rho = lim ||A^k||^(1/k), k = 2^10 by repeated
/// (normalised) squaring, in the Frobenius norm (at most n^(1/2048) above the limit): the
/// estimate when the eigenvalue iteration does not converge.
fn gelfand_radius(mut a: Mat<f64>) -> f64 {
    // log ||A^(2^j)|| accumulates as a sum of logs of the normalisers.
    let mut log_scale = 0.0f64;
    let squarings = 10;
    for _ in 0..squarings {
        let n = a.norm_l2();
        if n == 0.0 || !n.is_finite() {
            return if n == 0.0 { 0.0 } else { f64::NAN };
        }
        a /= faer::Scale(n);
        log_scale = 2.0 * (log_scale + n.ln());
        a = &a * &a;
    }
    ((log_scale + a.norm_l2().ln()) / f64::from(1u32 << squarings)).exp()
}

/// `a` as a faer view when it is row-major (standard layout) or column-major (the transpose of
/// a standard-layout array), rows contiguous in memory in either case.
fn faer_ref<T: Scalar, S: Data<Elem = T>>(a: &ArrayBase<S, Ix2>) -> Option<MatRef<'_, T>> {
    let (m, n) = a.dim();
    if let Some(s) = a.as_slice() {
        return Some(MatRef::from_row_major_slice(s, m, n));
    }
    // Column-major: its transpose is standard layout over the same memory.
    if a.t().is_standard_layout() {
        let s = a.as_slice_memory_order()?;
        return Some(MatRef::from_column_major_slice(s, m, n));
    }
    None
}

/// `C = alpha A B + beta C` with `beta` 0 (C overwritten, never read: NaN in C does not
/// propagate) or 1 (accumulate); any other `beta` scales C first. Shapes as
/// `general_mat_mul`: A (m, k), B (k, n), C (m, n); a mismatch panics there, as it does in
/// ndarray (a programming error: every layer sizes its buffers from the same dimensions).
pub fn gemm<T, SA, SB, SC>(
    alpha: T,
    a: &ArrayBase<SA, Ix2>,
    b: &ArrayBase<SB, Ix2>,
    beta: T,
    c: &mut ArrayBase<SC, Ix2>,
) where
    T: Scalar,
    SA: Data<Elem = T>,
    SB: Data<Elem = T>,
    SC: DataMut<Elem = T>,
{
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    let fast = k == k2 && c.dim() == (m, n);
    if let (true, Some(lhs), Some(rhs)) = (fast, faer_ref(a), faer_ref(b)) {
        if let Some(out) = c.as_slice_mut() {
            let accumulate = beta != T::zero();
            if accumulate && beta != T::one() {
                out.iter_mut().for_each(|v| *v *= beta);
            }
            T::faer_matmul(MatMut::from_row_major_slice_mut(out, m, n), accumulate, lhs, rhs, alpha);
            clear_upper_vector_state();
            return;
        }
    }
    general_mat_mul(alpha, a, b, beta, c);
}

/// A matrix inside a slice: element `(i, j)` at `data[offset + i * stride + j]`, rows `stride >= cols`
/// apart, read as its transpose after [`Strided::t`]. One head's columns of a wider buffer (every
/// `B`-th row of a time-major `(T*B, 3d)` projection) is one: the attention products read and write
/// such blocks in place instead of copying them out and back.
#[derive(Clone, Copy)]
pub struct Strided<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    stride: usize,
    transposed: bool,
}

impl<'a, T: Scalar> Strided<'a, T> {
    /// `rows x cols` starting at `data[offset]`; panics (in [`gemm_strided`]) when the last row
    /// does not fit in `data`, a programming error as a shape mismatch is in [`gemm`].
    pub fn new(data: &'a [T], offset: usize, rows: usize, cols: usize, stride: usize) -> Self {
        Strided { data: data.get(offset..).unwrap_or(&[]), rows, cols, stride, transposed: false }
    }

    /// The transpose, over the same memory.
    pub fn t(self) -> Self {
        Strided { transposed: !self.transposed, ..self }
    }

    fn faer(&self) -> MatRef<'a, T> {
        let m = MatRef::from_row_major_slice_with_stride(self.data, self.rows, self.cols, self.stride);
        if self.transposed {
            m.transpose()
        } else {
            m
        }
    }
}

/// The destination of [`gemm_strided`]: as [`Strided`], written.
pub struct StridedMut<'a, T> {
    data: &'a mut [T],
    rows: usize,
    cols: usize,
    stride: usize,
}

impl<'a, T: Scalar> StridedMut<'a, T> {
    /// See [`Strided::new`].
    pub fn new(data: &'a mut [T], offset: usize, rows: usize, cols: usize, stride: usize) -> Self {
        let data = match data.get_mut(offset..) {
            Some(d) => d,
            None => &mut [],
        };
        StridedMut { data, rows, cols, stride }
    }
}

/// `C = alpha A B (+ C if accumulate)` on blocks inside larger buffers (see [`Strided`]); C is
/// never read unless `accumulate`. Shapes: A (m, k), B (k, n), C (m, n); a mismatch or a block
/// that does not fit its slice panics, as in [`gemm`].
pub fn gemm_strided<T: Scalar>(alpha: T, a: Strided<'_, T>, b: Strided<'_, T>, accumulate: bool, c: StridedMut<'_, T>) {
    // The transpose of the column-major view: faer 0.22.6's `from_row_major_slice_with_stride_mut`
    // builds a column-major view (strides 1 and `row_stride`) while checking the bounds of a
    // row-major one, so it writes the transpose, past the checked end (the test below catches it).
    let out = MatMut::from_column_major_slice_with_stride_mut(c.data, c.cols, c.rows, c.stride).transpose_mut();
    T::faer_matmul(out, accumulate, a.faer(), b.faer(), alpha);
    clear_upper_vector_state();
}

#[cfg(test)]
mod tests {
    use super::{gelfand_radius, gemm, gemm_strided, spectrum, Strided, StridedMut};
    use faer::Mat;
    use ndarray::linalg::general_mat_mul;
    use ndarray::{s, Array2};

    fn filled(m: usize, n: usize, seed: f64) -> Array2<f64> {
        Array2::from_shape_fn((m, n), |(i, j)| ((i * 31 + j * 17) as f64 * 0.37 + seed).sin())
    }

    /// Every layout the layers pass (standard, transposed, row slices) and the fallback (a column
    /// slice, which has gaps), for beta 0, 1 and 0.5, against ndarray's product.
    #[test]
    fn gemm_matches_ndarray_for_every_layout_and_beta() {
        let a = filled(7, 5, 0.1);
        let at = filled(5, 7, 0.2);
        let b = filled(5, 9, 0.3);
        let bt = filled(9, 5, 0.4);
        let wide = filled(7, 12, 0.5);
        for beta in [0.0, 1.0, 0.5] {
            let c0 = filled(7, 9, 0.6);
            let cases: Vec<(Array2<f64>, Array2<f64>)> = vec![
                (a.clone(), b.clone()),
                (at.t().to_owned(), bt.t().to_owned()),
                (wide.slice(s![.., 2..7]).to_owned(), b.clone()),
            ];
            for (i, (x, y)) in cases.iter().enumerate() {
                let mut want = c0.clone();
                general_mat_mul(1.5, x, y, beta, &mut want);
                // The same values through the views the layers use.
                let mut got = c0.clone();
                match i {
                    0 => gemm(1.5, &a, &b, beta, &mut got),
                    1 => gemm(1.5, &at.t(), &bt.t(), beta, &mut got),
                    _ => gemm(1.5, &wide.slice(s![.., 2..7]), &b, beta, &mut got),
                }
                let diff = (&got - &want).iter().fold(0.0f64, |m, d| m.max(d.abs()));
                assert!(diff < 1e-12, "case {i} beta {beta}: {diff:e}");
            }
        }
        // Into a row block of a larger output (the per-step products write such blocks).
        let mut big = filled(20, 9, 0.7);
        let mut want = big.clone();
        gemm(1.0, &a, &b, 1.0, &mut big.slice_mut(s![7..14, ..]));
        general_mat_mul(1.0, &a, &b, 1.0, &mut want.slice_mut(s![7..14, ..]));
        assert!((&big - &want).iter().all(|d| d.abs() < 1e-12));
    }

    /// Blocks with gaps between their rows (one head's columns of every B-th row, as attention
    /// reads them), transposed or not, into a block of a larger output, against ndarray's product
    /// of the same blocks copied out; cells of the output outside the block are untouched.
    #[test]
    fn gemm_strided_matches_ndarray_on_blocks_of_wider_buffers() {
        // (T*B, 3d) with T 5, B 3, d 4: sample 1's rows are 1, 4, 7, 10, 13.
        let wide = filled(15, 12, 0.3);
        let (t, b, w) = (5, 3, 12);
        let q = wide.slice(s![1..;3, 2..4]).to_owned();
        let k = wide.slice(s![1..;3, 6..8]).to_owned();
        for accumulate in [false, true] {
            let mut out = filled(15, 4, 0.9);
            let mut want = out.clone();
            // S = 0.5 Q K^T into a (T, T) buffer, then 1.5 S^T K into sample 1's block of `out`.
            let mut s_buf = vec![0.0; t * t];
            gemm_strided(
                0.5,
                Strided::new(wide.as_slice().unwrap(), w + 2, t, 2, b * w),
                Strided::new(wide.as_slice().unwrap(), w + 6, t, 2, b * w).t(),
                false,
                StridedMut::new(&mut s_buf, 0, t, t, t),
            );
            let s_want = q.dot(&k.t()) * 0.5;
            let s_got = Array2::from_shape_vec((t, t), s_buf.clone()).unwrap();
            assert!((&s_got - &s_want).iter().all(|d| d.abs() < 1e-12), "{s_got:?}\n{s_want:?}");
            gemm_strided(
                1.5,
                Strided::new(&s_buf, 0, t, t, t).t(),
                Strided::new(wide.as_slice().unwrap(), w + 6, t, 2, b * w),
                accumulate,
                StridedMut::new(out.as_slice_mut().unwrap(), 4 + 1, t, 2, b * 4),
            );
            let prod = s_want.t().dot(&k) * 1.5;
            let mut block = want.slice_mut(s![1..;3, 1..3]);
            if accumulate {
                block += &prod;
            } else {
                block.assign(&prod);
            }
            assert!((&out - &want).iter().all(|d| d.abs() < 1e-12), "accumulate {accumulate}");
        }
    }

    #[test]
    fn beta_zero_overwrites_nan() {
        let (a, b) = (filled(4, 3, 0.1), filled(3, 2, 0.2));
        let mut c = Array2::from_elem((4, 2), f64::NAN);
        gemm(1.0, &a, &b, 0.0, &mut c);
        assert!(c.iter().all(|v| v.is_finite()));
        let mut f = Array2::from_elem((4, 2), f32::NAN);
        gemm(1.0f32, &a.mapv(|v| v as f32), &b.mapv(|v| v as f32), 0.0, &mut f);
        assert!(f.iter().all(|v| v.is_finite()));
    }

    fn row_major(n: usize, f: impl Fn(usize, usize) -> f64) -> Vec<f64> {
        (0..n * n).map(|k| f(k / n, k % n)).collect()
    }

    #[test]
    fn spectrum_of_scaled_identity_rotation_and_nilpotent() {
        // The identity made nalgebra's unbounded Schur iteration hang; it must return at once.
        let id = row_major(32, |i, j| if i == j { 1.5 } else { 0.0 });
        let (s, r) = spectrum(&id, 32);
        assert!((s - 1.5).abs() < 1e-9 && (r - 1.5).abs() < 1e-9, "{s} {r}");
        let id32: Vec<f32> = id.iter().map(|&v| v as f32).collect();
        let (s, r) = spectrum(&id32, 32);
        assert!((s - 1.5).abs() < 1e-6 && (r - 1.5).abs() < 1e-6, "{s} {r}");
        // A rotation by 90 degrees (times 2) has eigenvalues +-2i: radius 2, no real eigenvalue.
        let (s, r) = spectrum(&[0.0, -2.0, 2.0, 0.0], 2);
        assert!((s - 2.0).abs() < 1e-9 && (r - 2.0).abs() < 1e-9);
        // Nilpotent: radius 0 although the norm is 1.
        let (s, r) = spectrum(&[0.0, 1.0, 0.0, 0.0], 2);
        assert!((s - 1.0).abs() < 1e-12 && r < 1e-6);
        assert!(spectrum(&[0.0, f64::NAN, 0.0, 0.0], 2).0.is_nan());
        // The fallback estimate, on the same matrices: with the Frobenius norm it overestimates
        // by at most a factor n^(1/2048) (here 2^(1/2048) - 1 = 3.4e-4).
        let rot = Mat::<f64>::from_fn(2, 2, |i, j| [[0.0, -2.0], [2.0, 0.0]][i][j]);
        assert!((gelfand_radius(rot) / 2.0 - 1.0).abs() < 4e-4);
        assert!(gelfand_radius(Mat::<f64>::zeros(3, 3)) == 0.0);
    }

    /// The largest singular value agrees with nalgebra's SVD and the radius with nalgebra's
    /// Schur form, on a non-normal matrix; in f32 within f32 accuracy.
    #[test]
    fn spectrum_matches_nalgebra() {
        let n = 40;
        let m = row_major(n, |i, j| ((i * 7 + j * 13) as f64 * 0.71).sin() * 0.3);
        let d = nalgebra::DMatrix::<f64>::from_row_slice(n, n, &m);
        let svd = d.singular_values().iter().fold(0.0f64, |a, &v| a.max(v));
        let schur = nalgebra::linalg::Schur::try_new(d, 1e-12, 10_000).map(|s| s.complex_eigenvalues());
        let rho = schur.map(|e| e.iter().fold(0.0f64, |a, v| a.max(v.norm()))).unwrap_or(f64::NAN);
        let (s, r) = spectrum(&m, n);
        assert!((s / svd - 1.0).abs() < 1e-12 && (r / rho - 1.0).abs() < 1e-10, "{s} {svd} {r} {rho}");
        let m32: Vec<f32> = m.iter().map(|&v| v as f32).collect();
        let (s, r) = spectrum(&m32, n);
        assert!((s / svd - 1.0).abs() < 1e-5 && (r / rho - 1.0).abs() < 1e-4, "{s} {svd} {r} {rho}");
    }
}
