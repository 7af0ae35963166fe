//! Load time of all-MiniLM-L6-v2: the safetensors folder against the packed file made by
//! tools/convert (f32, used in place from the memory map). Run: `cargo bench --bench load`.

use std::path::PathBuf;

use bertrt::convert::{convert, ConvertOptions};
use bertrt::weights::packed::PackedDtype;
use bertrt::{Device, Model};
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let dir = bertrt::fetch::default_model().expect("default model");
    let packed = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("minilm-f32.bertrt");
    let opts = ConvertOptions {
        dtype: PackedDtype::F32,
        head: None,
        force: true,
    };
    convert(&dir, &packed, opts, &mut |_, _| {}).expect("packing the default model");
    let mut group = c.benchmark_group("load_minilm");
    group.sample_size(20);
    group.bench_function("safetensors_folder", |b| {
        b.iter(|| Model::load(&dir, None, Device::Cpu).unwrap())
    });
    group.bench_function("packed_file", |b| {
        b.iter(|| Model::load(&packed, None, Device::Cpu).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
