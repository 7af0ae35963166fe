//! attention_*: the fused kernel against the CPU attention op (outputs and probabilities,
//! padding from ragged lengths, causal masks, relative_key / relative_key_query), through
//! the WMMA entry points and the general one, in both head layouts; and against the
//! unfused composition (Q Kᵀ, scale, mask, softmax, P V) computed step by step in f64.

use bertrt::backend::cpu::attention::{
    attention as cpu_attention, AttnShape, KvSource, Products, RelativeTable,
};
use bertrt::config::PositionEmbeddingType;
use half::f16;
use kernel_harness::{
    attention, qkv_split, quantize, AttnPath, Cache, Elem, Heads, Ragged, Relative, Rng,
};

use super::util::{check, expect_launch};

struct Case {
    heads: usize,
    head_dim: usize,
    lens: &'static [usize],
    causal: bool,
    rel: Option<PositionEmbeddingType>,
    probs: bool,
}

const fn case(heads: usize, head_dim: usize, lens: &'static [usize]) -> Case {
    Case {
        heads,
        head_dim,
        lens,
        causal: false,
        rel: None,
        probs: false,
    }
}

const KEY: Option<PositionEmbeddingType> = Some(PositionEmbeddingType::RelativeKey);
const KEY_QUERY: Option<PositionEmbeddingType> = Some(PositionEmbeddingType::RelativeKeyQuery);

const CASES: &[Case] = &[
    case(1, 32, &[1]),
    Case {
        probs: true,
        ..case(3, 64, &[7, 3])
    },
    case(12, 32, &[130, 17]),
    Case {
        probs: true,
        ..case(1, 32, &[512])
    },
    case(2, 64, &[130]),
    Case {
        causal: true,
        probs: true,
        ..case(3, 32, &[7, 20])
    },
    Case {
        rel: KEY,
        probs: true,
        ..case(3, 32, &[20, 7])
    },
    Case {
        rel: KEY_QUERY,
        ..case(2, 64, &[9, 33])
    },
    Case {
        rel: KEY_QUERY,
        causal: true,
        ..case(1, 16, &[18, 5])
    },
    Case {
        probs: true,
        ..case(3, 16, &[7, 1, 16])
    },
    Case {
        probs: true,
        ..case(3, 12, &[7, 4])
    },
    Case {
        probs: true,
        ..case(12, 64, &[7, 2])
    },
];

/// Inputs of one case: packed [tokens, 3 * hidden] projections (exact in E) and the table.
struct Inputs {
    r: Ragged,
    qkv: Vec<f32>,
    table: Vec<f32>,
    max_positions: usize,
}

fn inputs<E: Elem>(rng: &mut Rng, c: &Case) -> Inputs {
    let r = Ragged::new(c.lens);
    let hidden = c.heads * c.head_dim;
    let max_positions = r.max_len() + 3;
    Inputs {
        qkv: quantize::<E>(&rng.vec(r.total() * 3 * hidden, -1.0, 1.0)).1,
        table: quantize::<E>(&rng.vec((2 * max_positions - 1) * c.head_dim, -0.5, 0.5)).1,
        max_positions,
        r,
    }
}

/// Q, K, V of the packed projections in layout `g` (padding rows zero).
fn split(qkv: &[f32], r: &Ragged, g: Heads) -> [Vec<f32>; 3] {
    let hidden = g.heads * g.head_dim;
    let mut out = [
        vec![0.0; g.len(r)],
        vec![0.0; g.len(r)],
        vec![0.0; g.len(r)],
    ];
    for (b, &len) in r.lens.iter().enumerate() {
        for i in 0..len {
            for c in 0..3 * hidden {
                let (which, h, d) = (c / hidden, (c % hidden) / g.head_dim, c % g.head_dim);
                out[which][g.row(r, b, h, i) + d] = qkv[(r.start(b) + i) * 3 * hidden + c];
            }
        }
    }
    out
}

/// Runs the kernel; returns the entry point, packed context and (when asked) probabilities.
fn run<E: Elem>(
    c: &Case,
    inp: &Inputs,
    packed: bool,
    path: AttnPath,
) -> (String, Vec<E>, Option<Vec<E>>) {
    let r = &inp.r;
    let g = Heads {
        heads: c.heads,
        head_dim: c.head_dim,
        packed,
    };
    let [q, k, v] = split(&inp.qkv, r, g).map(|t| quantize::<E>(&t).0);
    let table = quantize::<E>(&inp.table).0;
    let rel = c.rel.map(|kind| Relative {
        kind,
        table: &table,
        max_positions: inp.max_positions,
    });
    let junk = E::from_f32(9.0);
    let mut out = vec![junk; r.total() * c.heads * c.head_dim];
    let l = r.max_len();
    let mut probs = c.probs.then(|| vec![junk; r.batch() * c.heads * l * l]);
    let mut entry = String::new();
    let expected = match (E::SUFFIX, c.head_dim, path) {
        ("f16", 32, AttnPath::Auto) => "attention_f16_hd32".to_string(),
        ("f16", 64, AttnPath::Auto) => "attention_f16_hd64".to_string(),
        _ => format!("attention_{}", E::SUFFIX),
    };
    expect_launch(&expected, || {
        entry = attention(
            &q,
            &k,
            &v,
            r,
            g,
            None,
            c.causal,
            rel,
            path,
            &mut out,
            probs.as_deref_mut(),
        );
    });
    (entry, out, probs)
}

/// The CPU op on the padded batch; context back in packed rows, probabilities of padding
/// query rows zeroed (the kernel writes zeros there).
fn cpu_reference(c: &Case, inp: &Inputs) -> (Vec<f32>, Vec<f32>) {
    let r = &inp.r;
    let (hidden, l) = (c.heads * c.head_dim, r.max_len());
    let mut padded = vec![0.25f32; r.batch() * l * 3 * hidden];
    let mut mask = vec![0u8; r.batch() * l];
    for (b, &len) in r.lens.iter().enumerate() {
        for i in 0..len {
            let src = &inp.qkv[(r.start(b) + i) * 3 * hidden..][..3 * hidden];
            padded[(b * l + i) * 3 * hidden..][..3 * hidden].copy_from_slice(src);
            mask[b * l + i] = 1;
        }
    }
    let shape = AttnShape {
        batch: r.batch(),
        seq: l,
        past: 0,
        heads: c.heads,
        head_dim: c.head_dim,
        causal: c.causal,
    };
    let rel = c.rel.map(|kind| RelativeTable {
        kind,
        table: &inp.table,
        max_positions: inp.max_positions,
    });
    let mut out = vec![0.0; r.batch() * l * hidden];
    let mut probs = vec![0.0; r.batch() * c.heads * l * l];
    cpu_attention(
        Products::F32,
        shape,
        &padded,
        KvSource::Fused(&padded),
        &mask,
        rel,
        &mut out,
        Some(&mut probs),
    );
    let mut packed = Vec::with_capacity(r.total() * hidden);
    for (b, &len) in r.lens.iter().enumerate() {
        packed.extend_from_slice(&out[b * l * hidden..(b * l + len) * hidden]);
        for h in 0..c.heads {
            let rows =
                &mut probs[((b * c.heads + h) * l + len) * l..((b * c.heads + h) * l + l) * l];
            rows.fill(0.0);
        }
    }
    (packed, probs)
}

fn matches_cpu<E: Elem>(path: AttnPath) {
    let mut rng = Rng::new(51);
    for c in CASES {
        let inp = inputs::<E>(&mut rng, c);
        let tokens = inp.r.total();
        // The general path is the f32 code in f16: the long cases run through it there.
        if path == AttnPath::General && tokens > 64 {
            continue;
        }
        let (want_out, want_probs) = cpu_reference(c, &inp);
        // Both layouts on the short cases; the long ones (the slowest to emulate) packed.
        let layouts: &[bool] = if tokens > 64 { &[true] } else { &[false, true] };
        for &packed in layouts {
            let (entry, out, probs) = run::<E>(c, &inp, packed, path);
            let what = format!(
                "{entry} heads {} hd {} lens {:?} causal {} rel {:?} packed {packed}",
                c.heads, c.head_dim, c.lens, c.causal, c.rel
            );
            check(&format!("context: {what}"), &out, &want_out);
            if let Some(p) = probs {
                check(&format!("probs: {what}"), &p, &want_probs);
            }
        }
    }
}

#[test]
fn attention_matches_cpu_f32() {
    matches_cpu::<f32>(AttnPath::Auto);
}

#[test]
fn attention_matches_cpu_f16_wmma() {
    matches_cpu::<f16>(AttnPath::Auto);
}

#[test]
fn attention_matches_cpu_f16_general() {
    matches_cpu::<f16>(AttnPath::General);
}

/// The unfused composition in f64: scores = Q Kᵀ (+ relative terms), scaled, masked,
/// softmaxed row by row, times V.
fn composed(c: &Case, inp: &Inputs) -> Vec<f32> {
    let r = &inp.r;
    let (d, hidden) = (c.head_dim, c.heads * c.head_dim);
    let at =
        |t: usize, which: usize, h: usize| &inp.qkv[t * 3 * hidden + which * hidden + h * d..][..d];
    let dot = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| x as f64 * y as f64)
            .sum::<f64>()
    };
    let mut out = vec![0.0f32; r.total() * hidden];
    for (b, &len) in r.lens.iter().enumerate() {
        let t0 = r.start(b);
        for h in 0..c.heads {
            for i in 0..len {
                let q = at(t0 + i, 0, h);
                let visible = if c.causal { i + 1 } else { len };
                let mut scores: Vec<f64> = (0..visible)
                    .map(|j| {
                        let k = at(t0 + j, 1, h);
                        let mut s = dot(q, k);
                        if let Some(kind) = c.rel {
                            let e = &inp.table[(i + inp.max_positions - 1 - j) * d..][..d];
                            s += dot(q, e);
                            if kind == PositionEmbeddingType::RelativeKeyQuery {
                                s += dot(k, e);
                            }
                        }
                        s / (d as f64).sqrt()
                    })
                    .collect();
                let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                scores.iter_mut().for_each(|s| *s = (*s - mx).exp());
                let sum: f64 = scores.iter().sum();
                for dd in 0..d {
                    let ctx: f64 = (0..visible)
                        .map(|j| scores[j] / sum * at(t0 + j, 2, h)[dd] as f64)
                        .sum();
                    out[(t0 + i) * hidden + h * d + dd] = ctx as f32;
                }
            }
        }
    }
    out
}

fn matches_composition<E: Elem>() {
    let mut rng = Rng::new(52);
    for c in [&CASES[1], &CASES[5], &CASES[7], &CASES[10]] {
        let inp = inputs::<E>(&mut rng, c);
        let want = composed(c, &inp);
        let (entry, out, _) = run::<E>(c, &inp, true, AttnPath::Auto);
        check(
            &format!("{entry} vs composition, lens {:?}", c.lens),
            &out,
            &want,
        );
    }
}

#[test]
fn attention_matches_composition_f32() {
    matches_composition::<f32>();
}

#[test]
fn attention_matches_composition_f16() {
    matches_composition::<f16>();
}

/// The two kernels of the attention block chained as the CUDA backend runs them:
/// qkv_split (bias add, either layout) feeding attention, against the CPU op on the
/// biased projections.
fn split_then_attention<E: Elem>() {
    let mut rng = Rng::new(53);
    for c in [&CASES[1], &CASES[6], &CASES[11]] {
        let mut inp = inputs::<E>(&mut rng, c);
        let hidden = c.heads * c.head_dim;
        let qkv = quantize::<E>(&inp.qkv).0;
        let (bias, bias_f) = quantize::<E>(&rng.vec(3 * hidden, -0.5, 0.5));
        let table = quantize::<E>(&inp.table).0;
        let r = inp.r.clone();
        let mut outs = Vec::new();
        for packed in [false, true] {
            let g = Heads {
                heads: c.heads,
                head_dim: c.head_dim,
                packed,
            };
            let mut qkv_heads = [
                vec![E::default(); g.len(&r)],
                vec![E::default(); g.len(&r)],
                vec![E::default(); g.len(&r)],
            ];
            let [q, k, v] = &mut qkv_heads;
            qkv_split(&qkv, Some(&bias), &r, g, None, q, k, v);
            let rel = c.rel.map(|kind| Relative {
                kind,
                table: &table,
                max_positions: inp.max_positions,
            });
            let mut out = vec![E::default(); r.total() * hidden];
            let entry = attention(
                q,
                k,
                v,
                &r,
                g,
                None,
                c.causal,
                rel,
                AttnPath::Auto,
                &mut out,
                None,
            );
            outs.push((entry, packed, out));
        }
        // The CPU sees the biased projections, rounded to E as the split kernel stores them.
        for (i, x) in inp.qkv.iter_mut().enumerate() {
            *x = E::from_f32(*x + bias_f[i % (3 * hidden)]).to_f32();
        }
        let (want, _) = cpu_reference(c, &inp);
        for (entry, packed, out) in outs {
            check(
                &format!("qkv_split -> {entry}, lens {:?} packed {packed}", c.lens),
                &out,
                &want,
            );
        }
    }
}

#[test]
fn split_then_attention_matches_cpu_f32() {
    split_then_attention::<f32>();
}

#[test]
fn split_then_attention_matches_cpu_f16() {
    split_then_attention::<f16>();
}

/// Incremental decoding: `past` cached positions, some of them masked out (and, in one
/// case, every key a query may see, which gives uniform weights), followed by this step's
/// tokens. qkv_split appends this step's K and V to the cache; attention reads the whole
/// cache back, causally. Against the CPU op reading the same cache.
fn cache_matches_cpu<E: Elem>() {
    let mut rng = Rng::new(54);
    // (heads, head_dim, batch, past, seq, relative, fully masked row)
    let cases = [
        (3, 32, 2, 5, 1, None, false),
        (2, 64, 2, 9, 3, KEY_QUERY, true),
        (3, 12, 1, 20, 4, KEY, false),
        (1, 32, 3, 17, 16, None, true),
    ];
    for (heads, hd, batch, past, seq, rel, fully_masked) in cases {
        let r = Ragged::new(&vec![seq; batch]);
        let (hidden, keys, capacity) = (heads * hd, past + seq, past + seq + 2);
        let max_positions = capacity + 1;
        let cache_len = batch * heads * capacity * hd;
        let old_k = quantize::<E>(&rng.vec(cache_len, -1.0, 1.0)).1;
        let old_v = quantize::<E>(&rng.vec(cache_len, -1.0, 1.0)).1;
        let qkv = quantize::<E>(&rng.vec(r.total() * 3 * hidden, -1.0, 1.0)).1;
        let table = quantize::<E>(&rng.vec((2 * max_positions - 1) * hd, -0.5, 0.5)).1;
        let mut mask = vec![1u8; batch * keys];
        if batch > 1 {
            // Sequence 1 had two padding tokens first; with `fully_masked`, everything
            // its first query may see is masked.
            let masked = if fully_masked { past + 1 } else { 2 };
            mask[keys..keys + masked].fill(0);
        }

        // The CPU reads a cache that already holds this step's keys and values.
        let (mut cpu_k, mut cpu_v) = (old_k.clone(), old_v.clone());
        for b in 0..batch {
            for i in 0..seq {
                for h in 0..heads {
                    let dst = ((b * heads + h) * capacity + past + i) * hd;
                    let src = (b * seq + i) * 3 * hidden + h * hd;
                    cpu_k[dst..dst + hd].copy_from_slice(&qkv[src + hidden..src + hidden + hd]);
                    cpu_v[dst..dst + hd]
                        .copy_from_slice(&qkv[src + 2 * hidden..src + 2 * hidden + hd]);
                }
            }
        }
        let shape = AttnShape {
            batch,
            seq,
            past,
            heads,
            head_dim: hd,
            causal: true,
        };
        let cpu_rel = rel.map(|kind| RelativeTable {
            kind,
            table: &table,
            max_positions,
        });
        let kv = KvSource::Cache {
            k: &cpu_k,
            v: &cpu_v,
            capacity,
        };
        let mut want = vec![0.0; r.total() * hidden];
        let mut want_probs = vec![0.0; batch * heads * seq * keys];
        cpu_attention(
            Products::F32,
            shape,
            &qkv,
            kv,
            &mask,
            cpu_rel,
            &mut want,
            Some(&mut want_probs),
        );

        let qkv_e = quantize::<E>(&qkv).0;
        let table_e = quantize::<E>(&table).0;
        for packed in [false, true] {
            let g = Heads {
                heads,
                head_dim: hd,
                packed,
            };
            let cache = Cache {
                capacity,
                past,
                key_mask: Some(&mask),
            };
            let mut q = vec![E::default(); g.len(&r)];
            let (mut k, mut v) = (quantize::<E>(&old_k).0, quantize::<E>(&old_v).0);
            expect_launch(&format!("qkv_split_{}", E::SUFFIX), || {
                qkv_split(&qkv_e, None, &r, g, Some(cache), &mut q, &mut k, &mut v)
            });
            let what = format!("cache heads {heads} hd {hd} past {past} seq {seq} packed {packed}");
            check(&format!("appended keys, {what}"), &k, &cpu_k);
            check(&format!("appended values, {what}"), &v, &cpu_v);
            let rel = rel.map(|kind| Relative {
                kind,
                table: &table_e,
                max_positions,
            });
            let mut out = vec![E::default(); r.total() * hidden];
            let mut probs = vec![E::from_f32(9.0); batch * heads * seq * keys];
            let entry = attention(
                &q,
                &k,
                &v,
                &r,
                g,
                Some(cache),
                true,
                rel,
                AttnPath::Auto,
                &mut out,
                Some(&mut probs),
            );
            check(&format!("context: {entry}, {what}"), &out, &want);
            check(&format!("probs: {entry}, {what}"), &probs, &want_probs);
        }
    }
}

#[test]
fn attention_cache_matches_cpu_f32() {
    cache_matches_cpu::<f32>();
}

#[test]
fn attention_cache_matches_cpu_f16() {
    cache_matches_cpu::<f16>();
}
