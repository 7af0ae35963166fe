//! Outlier input channels. BERT's hidden states carry a few channels, the same ones for
//! every token, far larger than the rest (all-MiniLM-L6-v2's LayerNorm outputs reach 30
//! where most values stay below 1); in a per-row int8 step they would take most of the
//! 255 levels. Each row's [`OUTLIERS`] channels of largest |x| are left out of its
//! quantization, chosen from that row alone (so a row's result never depends on the
//! other rows of its batch); their contribution is computed in f32 ([`Part`], from the
//! rows of w kept k-major in bf16) into each task's block of the output just before the
//! int8 product adds to it, while the block is in cache: out[r] = (bias + x[r, O_r] ·
//! w[:, O_r]ᵀ) + the int8 product.
//!
//! On all-MiniLM-L6-v2 (the FFN output projection in bf16, see
//! `cpu::packed_linear::linear_dtype`) this lifts the lowest sentence-embedding cosine to
//! float64 from 0.9974 to 0.9997, for 8 of 384 channels computed in f32.

/// Channels taken out of each row's quantization.
pub const OUTLIERS: usize = 8;

/// Products with fewer input channels quantize them all.
pub const MIN_K: usize = 64;

/// The [`OUTLIERS`] channels of `row` with the largest |x|, ascending, into `channels`
/// (ties to the lower index; a NaN never wins, which only changes which channels are
/// picked). `row` has at least [`MIN_K`] values. `native`: with AVX-512 (the caller has
/// checked the native int8 path is supported).
pub fn select(native: bool, row: &[f32], channels: &mut [usize; OUTLIERS]) {
    match native {
        // SAFETY: the caller checked the native int8 path, so AVX-512F and VL, and
        // POPCNT, are supported.
        #[cfg(target_arch = "x86_64")]
        true => unsafe { select_avx512(row, channels) },
        _ => select_body(row, channels),
    }
}

/// [`select_body`]'s choice with AVX-512, without data-dependent branches in the common
/// case. The 8th largest of 32 lane maxima (lane l's over x[l], x[32 + l], ... and over
/// x[16 + l], x[48 + l], ...: 32 distinct values) bounds the 8th largest |x| from below
/// (lanes past a short row hold zeros, which only lower it); it is found by counting, for
/// each maximum, the maxima larger than it. The values that reach it (the candidates, at
/// most [`CANDIDATES`], in index order) hold every chosen channel; each candidate's rank
/// (the candidates larger, or equal at a lower index) is counted by two comparisons, and
/// those ranked below [`OUTLIERS`] are the channels, already ascending. Rows with more
/// candidates than that (many equal values) or fewer than [`OUTLIERS`] (mostly NaN) take
/// the value-by-value pass: the same channels.
///
/// # Safety
/// The CPU must support AVX-512F and VL, and POPCNT; `row` has at least 16 values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,popcnt")]
unsafe fn select_avx512(row: &[f32], channels: &mut [usize; OUTLIERS]) {
    use std::arch::x86_64::*;
    let len = row.len();
    let sign = _mm512_set1_epi32(0x7fff_ffff);
    // |x| of the block at i (zeros past the row). Written out rather than as closures,
    // which would not inherit this function's target features.
    macro_rules! block {
        ($i:expr) => {{
            let left = len - $i;
            let mask: __mmask16 = if left >= 16 {
                0xffff
            } else {
                (1u16 << left) - 1
            };
            let v = _mm512_maskz_loadu_ps(mask, row.as_ptr().add($i));
            (
                mask,
                _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), sign)),
            )
        }};
    }
    // Lane maxima over the even blocks and over the odd ones, in two registers (zeros in
    // `odd` when the row has one block). max_ps returns its second operand when either is
    // NaN: a NaN never wins.
    let (mut even, mut odd) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut i = 0;
    while i + 32 <= len {
        even = _mm512_max_ps(block!(i).1, even);
        odd = _mm512_max_ps(block!(i + 16).1, odd);
        i += 32;
    }
    if i < len {
        even = _mm512_max_ps(block!(i).1, even);
        if i + 16 < len {
            odd = _mm512_max_ps(block!(i + 16).1, odd);
        }
    }
    // The maxima are finite or infinite, never NaN, and >= 0: their bits order as they do.
    let (even, odd) = (_mm512_castps_si512(even), _mm512_castps_si512(odd));
    let mut lanes = [0u32; 32];
    _mm512_storeu_si512(lanes.as_mut_ptr().cast(), even);
    _mm512_storeu_si512(lanes.as_mut_ptr().add(16).cast(), odd);
    let mut eighth = u32::MAX;
    for &m in &lanes {
        let b = _mm512_set1_epi32(m as i32);
        let larger = _mm512_cmpgt_epu32_mask(even, b).count_ones()
            + _mm512_cmpgt_epu32_mask(odd, b).count_ones();
        if larger < OUTLIERS as u32 {
            eighth = eighth.min(m);
        }
    }
    let floor = _mm512_set1_ps(f32::from_bits(eighth));
    // The candidates' values and channels, packed in index order; each store writes a
    // whole vector from the next free slot, so the arrays have a vector of room.
    let (mut value, mut channel) = ([0f32; 2 * CANDIDATES], [0i32; 2 * CANDIDATES]);
    let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let mut found = 0;
    for i in (0..len).step_by(16) {
        let (mask, v) = block!(i);
        let hits = _mm512_mask_cmp_ps_mask::<_CMP_GE_OQ>(mask, v, floor);
        if hits != 0 {
            let count = hits.count_ones() as usize;
            if found + count > CANDIDATES {
                return select_body(row, channels);
            }
            let at = _mm512_add_epi32(iota, _mm512_set1_epi32(i as i32));
            _mm512_storeu_ps(
                value.as_mut_ptr().add(found),
                _mm512_maskz_compress_ps(hits, v),
            );
            _mm512_storeu_si512(
                channel.as_mut_ptr().add(found).cast(),
                _mm512_maskz_compress_epi32(hits, at),
            );
            found += count;
        }
    }
    if found < OUTLIERS {
        return select_body(row, channels);
    }
    let valid = ((1u32 << found) - 1) as u16;
    let values = _mm512_loadu_ps(value.as_ptr());
    let mut chosen: u16 = 0;
    for (c, &v) in value[..found].iter().enumerate() {
        let b = _mm512_set1_ps(v);
        let before = valid & ((1u16 << c) - 1);
        let rank = _mm512_mask_cmp_ps_mask::<_CMP_GT_OQ>(valid, values, b).count_ones()
            + _mm512_mask_cmp_ps_mask::<_CMP_EQ_OQ>(before, values, b).count_ones();
        if rank < OUTLIERS as u32 {
            chosen |= 1 << c;
        }
    }
    let picked = _mm512_maskz_compress_epi32(chosen, _mm512_loadu_si512(channel.as_ptr().cast()));
    let mut out = [0i32; 16];
    _mm512_storeu_si512(out.as_mut_ptr().cast(), picked);
    for (c, &p) in channels.iter_mut().zip(&out) {
        *c = p as usize;
    }
}

/// Most candidates [`select_avx512`] ranks: one vector.
#[cfg(target_arch = "x86_64")]
const CANDIDATES: usize = 16;

/// The value-by-value choice: one pass keeping the largest so far, by value then by
/// lower index (every |x| >= 0, so all slots fill; a NaN never compares larger).
#[inline(always)]
fn select_body(row: &[f32], channels: &mut [usize; OUTLIERS]) {
    let mut top = [(-1.0f32, 0usize); OUTLIERS];
    for (j, &v) in row.iter().enumerate() {
        keep(&mut top, v.abs(), j);
    }
    finish(&top, channels);
}

/// Puts (m, j) into the descending `top` if m beats its last.
#[inline(always)]
fn keep(top: &mut [(f32, usize); OUTLIERS], m: f32, j: usize) {
    if m > top[OUTLIERS - 1].0 {
        let at = top.iter().position(|t| m > t.0).unwrap_or(OUTLIERS - 1);
        top.copy_within(at..OUTLIERS - 1, at + 1);
        top[at] = (m, j);
    }
}

/// The chosen channels, ascending.
fn finish(top: &[(f32, usize); OUTLIERS], channels: &mut [usize; OUTLIERS]) {
    for (c, t) in channels.iter_mut().zip(top) {
        *c = t.1;
    }
    channels.sort_unstable();
}

/// The outlier channels' exact part of a product, the start its int8 part adds to:
/// out[r, j] = bias[j] + sum over row r's channels c (ascending) of x[r, c] · wt[c, j],
/// in f32 with the weight in bf16, accumulated channel by channel.
pub struct Part<'a> {
    /// The activations, rows of `k`.
    pub x: &'a [f32],
    /// Input features.
    pub k: usize,
    /// Each row's channels, in slots of [`OUTLIERS`]; the first `per_row` are used.
    pub channels: &'a [usize],
    /// Channels used a row.
    pub per_row: usize,
    /// The weight k-major ([k, n]) in bf16.
    pub wt: &'a [u16],
    /// Output columns.
    pub n: usize,
    /// The product's bias, where the part starts.
    pub bias: Option<&'a [f32]>,
}

impl Part<'_> {
    /// Panics unless the slices hold `rows` rows (a plan bug): what [`Part::block`] reads.
    pub fn check(&self, rows: usize) {
        assert!(self.wt.len() >= self.k * self.n && self.x.len() >= rows * self.k);
        assert!(self.channels.len() >= rows * OUTLIERS && self.per_row <= OUTLIERS);
        assert!(self.bias.is_none_or(|b| b.len() >= self.n));
    }

    /// Writes the part of rows row0.., columns col0..col0 + cols into the output's block
    /// at `c` (rows n apart). `native`: with AVX-512.
    ///
    /// # Safety
    /// [`Part::check`] passed for at least row0 + rows rows; col0 + cols <= n; `c` is
    /// valid for writes of c[i * n + j] (i < rows, j < cols) and nothing else aliases
    /// them; with `native`, the CPU supports AVX-512F, BW and VL.
    pub unsafe fn block(
        &self,
        native: bool,
        row0: usize,
        rows: usize,
        col0: usize,
        cols: usize,
        c: *mut f32,
    ) {
        for i in 0..rows {
            // SAFETY: row i of the block, `cols` values (the caller's contract).
            let out = std::slice::from_raw_parts_mut(c.add(i * self.n), cols);
            match native {
                // SAFETY: AVX-512F/BW/VL (the caller's contract); the row and columns lie
                // within what `check` asserted.
                #[cfg(target_arch = "x86_64")]
                true => self.row_avx512(row0 + i, col0, out),
                _ => self.row(row0 + i, col0, out),
            }
        }
    }

    /// Row `r`'s channels, ascending.
    fn channels_of(&self, r: usize) -> &[usize] {
        &self.channels[r * OUTLIERS..][..self.per_row]
    }

    /// The portable part of row `r`, columns col0..col0 + out.len(): bias, then each
    /// channel's x · w added in turn.
    fn row(&self, r: usize, col0: usize, out: &mut [f32]) {
        let (n, cols) = (self.n, out.len());
        match self.bias {
            Some(b) => out.copy_from_slice(&b[col0..col0 + cols]),
            None => out.fill(0.0),
        }
        let x = &self.x[r * self.k..(r + 1) * self.k];
        for &c in self.channels_of(r) {
            let xv = x[c];
            let w = &self.wt[c * n + col0..c * n + col0 + cols];
            for (o, &w) in out.iter_mut().zip(w) {
                *o += xv * f32::from_bits(u32::from(w) << 16);
            }
        }
    }

    /// [`Part::row`]'s sums (bias, then each channel's x · w as a multiply and an add, in
    /// the same order: the same bits), 64 columns at a time in registers across all the
    /// row's channels, so that `out` is written once rather than once per channel.
    ///
    /// # Safety
    /// The CPU must support AVX-512F, BW and VL; the row and columns lie within what
    /// [`Part::check`] asserts.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn row_avx512(&self, r: usize, col0: usize, out: &mut [f32]) {
        let cols = out.len();
        let mut uses = [(0usize, 0.0f32); OUTLIERS];
        for (u, &c) in uses.iter_mut().zip(self.channels_of(r)) {
            *u = (c, self.x[r * self.k + c]);
        }
        let t = RowPart {
            out: out.as_mut_ptr(),
            n: self.n,
            bias: self.bias.map(|b| b[col0..].as_ptr()),
            wt: self.wt[col0..].as_ptr(),
            uses: &uses[..self.per_row],
        };
        let mut j0 = 0;
        while j0 + 64 <= cols {
            columns::<4>(&t, j0, 0xffff);
            j0 += 64;
        }
        while j0 < cols {
            let left = cols - j0;
            columns::<1>(
                &t,
                j0,
                if left >= 16 {
                    0xffff
                } else {
                    (1u16 << left) - 1
                },
            );
            j0 += 16;
        }
    }
}

/// One row's part over some columns: `out` and `bias` start at the first of them, as does
/// `wt`, whose rows (`n` apart) are named by `uses` (channel, x value).
#[cfg(target_arch = "x86_64")]
struct RowPart<'a> {
    out: *mut f32,
    n: usize,
    bias: Option<*const f32>,
    wt: *const u16,
    uses: &'a [(usize, f32)],
}

/// NV vectors of 16 columns from column j0; the last covers only the lanes of `last`.
///
/// # Safety
/// As [`Part::row_avx512`]; j0 + 16 (NV - 1) + the lanes of `last` <= the row's columns.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn columns<const NV: usize>(t: &RowPart, j0: usize, last: u16) {
    use std::arch::x86_64::*;
    let lanes = |v: usize| if v + 1 == NV { last } else { 0xffff };
    let mut acc: [__m512; NV] = std::array::from_fn(|v| match t.bias {
        Some(b) => _mm512_maskz_loadu_ps(lanes(v), b.add(j0 + 16 * v)),
        None => _mm512_setzero_ps(),
    });
    for &(c, x) in t.uses {
        let row = t.wt.add(c * t.n + j0);
        let xv = _mm512_set1_ps(x);
        for (v, a) in acc.iter_mut().enumerate() {
            let h = _mm256_maskz_loadu_epi16(lanes(v), row.add(16 * v).cast());
            let w = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)));
            *a = _mm512_add_ps(*a, _mm512_mul_ps(xv, w));
        }
    }
    for (v, &a) in acc.iter().enumerate() {
        _mm512_mask_storeu_ps(t.out.add(j0 + 16 * v), lanes(v), a);
    }
}
