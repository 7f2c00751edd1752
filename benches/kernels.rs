//! Criterion benchmarks of the hot kernels on realistic sizes: two tile rows (2 x 384 rows) of
//! a full-width 10980-pixel Sentinel-2 scene.
//!
//! Run with `cargo bench -p cloudkit-core`; `-- --quick` for a smoke run. The whole-scene
//! kernels (`whole_raster`) are built for it by the crate's dev-dependency on itself.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ndarray::{s, Array2};

use cloudkit_core::whole_raster::{downsample_mean, reflectance_tiles, upsample_nearest};
use cloudkit_core::{band_window, cut_stripe, StripeLayout, TileGrid};

const WIDTH: usize = 10980;
const TILE: usize = 384;
const ROWS: usize = 2 * TILE;

/// Deterministic DN-like values without DN 0, so every pixel counts.
fn band(rows: usize, cols: usize, seed: usize) -> Array2<u16> {
    Array2::from_shape_fn((rows, cols), |(y, x)| {
        (1 + (y * 7919 + x * 104_729 + seed * 31) % 12_000) as u16
    })
}

/// The 13 Sentinel-2 bands of a `rows`-row stripe at native resolution, with their factors.
fn scene_bands(rows: usize) -> (Vec<Array2<u16>>, Vec<i64>) {
    let mut bands = Vec::new();
    let mut factors = Vec::new();
    for (count, factor) in [(4, 1usize), (6, 2), (3, 6)] {
        for i in 0..count {
            bands.push(band(rows.div_ceil(factor), WIDTH / factor, bands.len() + i));
            factors.push(factor as i64);
        }
    }
    (bands, factors)
}

fn resampling(c: &mut Criterion) {
    let mut group = c.benchmark_group("resample");
    let coarse = band(ROWS / 2, WIDTH / 2, 1);
    let fine = band(ROWS, WIDTH, 2);
    group.throughput(Throughput::Elements((ROWS * WIDTH) as u64));
    group.bench_function("upsample_nearest x2", |b| {
        b.iter(|| upsample_nearest(coarse.view(), 2).unwrap())
    });
    group.bench_function("downsample_mean /2", |b| {
        b.iter(|| downsample_mean(fine.view(), 2).unwrap())
    });
    group.finish();
}

fn stripes(c: &mut Criterion) {
    let (bands, factors) = scene_bands(ROWS);
    let views: Vec<_> = bands.iter().map(|b| b.view()).collect();
    let mut group = c.benchmark_group("stripe");
    group.sample_size(10);
    group.throughput(Throughput::Elements((ROWS * WIDTH * bands.len()) as u64));

    let grid = TileGrid::new(ROWS, WIDTH, TILE, 0).unwrap();
    let layout = StripeLayout::new(grid.clone(), &factors, &[0; 13], None).unwrap();
    group.bench_function("cut_stripe 2 rows x 13 bands", |b| {
        b.iter(|| {
            for row in 0..grid.tile_rows() {
                let y0 = row * TILE;
                let stripes: Vec<_> = bands
                    .iter()
                    .zip(&factors)
                    .map(|(band, &f)| {
                        let (r0, n) = band_window(y0, TILE, f, band.nrows()).unwrap();
                        band.slice(s![r0..r0 + n, ..])
                    })
                    .collect();
                cut_stripe(&layout, y0, &stripes, None).unwrap();
            }
        })
    });

    let offsets = [-1000.0f32; 13];
    group.bench_function("reflectance_tiles 2 rows x 13 bands", |b| {
        b.iter(|| reflectance_tiles(&views, &factors, ROWS, WIDTH, 1e4, &offsets, TILE, 0).unwrap())
    });
    group.finish();
}

criterion_group!(benches, resampling, stripes);
criterion_main!(benches);
