//! Writing finished tiles as whole chunks into the Zarr v3 tile store.
//!
//! One writer owns the store's metadata: Python (`cloudkit/io/store/`, zarr-python) creates
//! the group and every array, reserves a scene's rows before its writer opens, truncates and
//! commits. Rust never creates, resizes or writes metadata: it opens `images`, `valid` and
//! `labels`, checks they fit the tiles it will write, reads their shape once, and encodes and
//! writes whole chunks into the reserved rows by tile index. A tile index past those rows is
//! an error, never a reason to resize. Every chunk is written, even one that holds only the
//! fill value, so a committed tile whose chunk is missing is known to be damaged; the codecs
//! (zstd, and crc32c in stores that checksum their chunks) come from the arrays' metadata.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ndarray::ArrayView2;
use rayon::prelude::*;
use zarrs::array::{data_type, Array, CodecOptions, DataType};
use zarrs::filesystem::FilesystemStore;

use crate::error::{Error, Result};
use crate::stripe::{cut_stripe, StripeLayout, StripeTile};

/// The pixel arrays of a tile store, checked against the band count and tile size.
pub struct TileArrays {
    path: PathBuf,
    images: Array<FilesystemStore>,
    valid: Array<FilesystemStore>,
    labels: Option<Array<FilesystemStore>>,
}

impl TileArrays {
    /// Opens `images` (uint16, chunks (1, bands, tile, tile)), `valid` (uint8, chunks
    /// (1, 1, tile, tile)) and, when `with_labels`, `labels` (like `valid`) in the group at `path`.
    pub fn open(path: &Path, bands: usize, tile: usize, with_labels: bool) -> Result<Self> {
        let (first, side) = (bands as u64, tile as u64);
        let open = |name, data_type, first| open_array(path, name, data_type, [first, side]);
        Ok(Self {
            path: path.to_path_buf(),
            images: open("images", data_type::uint16(), first)?,
            valid: open("valid", data_type::uint8(), 1)?,
            labels: with_labels
                .then(|| open("labels", data_type::uint8(), 1))
                .transpose()?,
        })
    }

    /// How many tiles every array can hold: the rows Python reserved before this opened.
    pub fn capacity(&self) -> u64 {
        let arrays = [Some(&self.images), Some(&self.valid), self.labels.as_ref()];
        arrays
            .into_iter()
            .flatten()
            .map(|a| a.shape()[0])
            .min()
            .unwrap_or(0)
    }

    /// Refuses to write tiles `0..end` unless every array already holds them.
    pub fn check_room(&self, end: u64) -> Result<()> {
        if end > self.capacity() {
            return Err(self.error(format!(
                "tile index {} is beyond the arrays' {} tiles: reserve the scene's rows \
                 (TileStore.begin_scene) before opening its writer",
                end - 1,
                self.capacity()
            )));
        }
        Ok(())
    }

    /// Encodes and writes one tile's chunks at `index`.
    pub fn write_tile(&self, index: u64, tile: &StripeTile) -> Result<()> {
        if index >= self.capacity() {
            return Err(self.error(format!(
                "tile index {index} is beyond the arrays' {} tiles",
                self.capacity()
            )));
        }
        let chunk = [index, 0, 0, 0];
        let every_chunk = CodecOptions::default().with_store_empty_chunks(true);
        let write = |array: &Array<FilesystemStore>, result: zarrs::array::ArrayError| {
            self.error(format!(
                "cannot write chunk {index} of {}: {result}",
                array.path()
            ))
        };
        self.images
            .store_chunk_opt(&chunk, tile.image.as_slice(), &every_chunk)
            .map_err(|e| write(&self.images, e))?;
        self.valid
            .store_chunk_opt(&chunk, tile.valid.as_slice(), &every_chunk)
            .map_err(|e| write(&self.valid, e))?;
        match (&self.labels, &tile.labels) {
            (Some(array), Some(codes)) => array
                .store_chunk_opt(&chunk, codes.as_slice(), &every_chunk)
                .map_err(|e| write(array, e)),
            (None, None) => Ok(()),
            _ => Err(self.error("tile labels do not match the store's labels array".into())),
        }
    }

    fn error(&self, reason: String) -> Error {
        Error::Store {
            path: self.path.display().to_string(),
            reason,
        }
    }
}

/// Opens array `name` of the group at `path` and checks its data type, shape `(N, *inner)`
/// and chunk shape `(1, *inner)`, where `inner` is `[first, tile]` for `(first, tile, tile)`.
fn open_array(
    path: &Path,
    name: &str,
    data_type: DataType,
    [first, tile]: [u64; 2],
) -> Result<Array<FilesystemStore>> {
    let error = |reason: String| Error::Store {
        path: path.display().to_string(),
        reason,
    };
    let store =
        FilesystemStore::new(path).map_err(|e| error(format!("cannot open the directory: {e}")))?;
    let array = Array::open(Arc::new(store), &format!("/{name}")).map_err(|e| {
        error(format!(
            "cannot open array '{name}' ({e}); create the store with cloudkit first"
        ))
    })?;
    if array.data_type() != &data_type {
        return Err(error(format!(
            "array '{name}' holds {}, expected {data_type}",
            array.data_type()
        )));
    }
    let expected = [first, tile, tile];
    let shape = array.shape();
    let chunk: Vec<u64> = array
        .chunk_shape(&[0, 0, 0, 0])
        .map(|c| c.iter().map(|n| n.get()).collect())
        .unwrap_or_default();
    if shape.len() != 4 || shape[1..] != expected || chunk[..] != [1, first, tile, tile] {
        return Err(error(format!(
            "array '{name}' has shape {shape:?} in chunks {chunk:?}, expected shape \
             [N, {first}, {tile}, {tile}] in chunks [1, {first}, {tile}, {tile}]"
        )));
    }
    Ok(array)
}

/// What the store index records about one written tile.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WrittenTile {
    pub index: u64,
    pub row_origin: usize,
    pub col_origin: usize,
    pub valid_fraction: f32,
    pub cloud_fraction: f32,
}

/// Cuts tile rows and writes their tiles at consecutive indices.
pub struct TileWriter {
    arrays: TileArrays,
    layout: StripeLayout,
    next_index: u64,
    skip_empty: bool,
    cutting: Duration,
    storing: Duration,
}

impl TileWriter {
    pub fn new(
        path: &Path,
        start_index: u64,
        layout: StripeLayout,
        skip_empty: bool,
    ) -> Result<Self> {
        let arrays = TileArrays::open(
            path,
            layout.band_count(),
            layout.grid().tile(),
            layout.has_labels(),
        )?;
        Ok(Self {
            arrays,
            layout,
            next_index: start_index,
            skip_empty,
            cutting: Duration::ZERO,
            storing: Duration::ZERO,
        })
    }

    /// Seconds spent so far cutting tiles (resampling the coarser bands, cutting, counting
    /// valid pixels) and storing them (zstd + CRC-32C, chunk files written): where a tile
    /// run's time goes, for its summary.
    pub fn seconds(&self) -> (f64, f64) {
        (self.cutting.as_secs_f64(), self.storing.as_secs_f64())
    }

    /// Index the next written tile gets.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// Cuts the tile row at `y0` from native stripes (see [`cut_stripe`]) and writes its tiles,
    /// leaving out those without a valid pixel when `skip_empty`, compressing in parallel.
    pub fn write_row(
        &mut self,
        y0: usize,
        bands: &[ArrayView2<'_, u16>],
        labels: Option<ArrayView2<'_, u8>>,
    ) -> Result<Vec<WrittenTile>> {
        let started = Instant::now();
        let mut tiles = cut_stripe(&self.layout, y0, bands, labels)?;
        if self.skip_empty {
            tiles.retain(|tile| tile.valid_fraction > 0.0);
        }
        let first = self.next_index;
        self.arrays.check_room(first + tiles.len() as u64)?;
        let cut = Instant::now();
        self.cutting += cut - started;
        let arrays = &self.arrays;
        tiles
            .par_iter()
            .enumerate()
            .try_for_each(|(i, tile)| arrays.write_tile(first + i as u64, tile))?;
        self.storing += cut.elapsed();
        self.next_index = first + tiles.len() as u64;
        Ok(tiles
            .iter()
            .enumerate()
            .map(|(i, tile)| WrittenTile {
                index: first + i as u64,
                row_origin: tile.row_origin,
                col_origin: tile.col_origin,
                valid_fraction: tile.valid_fraction,
                cloud_fraction: tile.cloud_fraction,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiling::TileGrid;
    use ndarray::Array2;
    use zarrs::array::codec::{Crc32cCodec, ZstdCodec};
    use zarrs::array::ArrayBuilder;

    /// Creates the arrays the way Python does: bytes + zstd + crc32c, chunks of one tile.
    fn create_store(path: &Path, tiles: u64, bands: u64, tile: u64, labels: bool) {
        let store = Arc::new(FilesystemStore::new(path).unwrap());
        let mut arrays = vec![
            ("images", data_type::uint16(), bands, 0u64),
            ("valid", data_type::uint8(), 1, 0),
        ];
        if labels {
            arrays.push(("labels", data_type::uint8(), 1, 255));
        }
        for (name, data_type, first, fill) in arrays {
            let fill: zarrs::array::FillValue = if data_type == data_type::uint16() {
                (fill as u16).into()
            } else {
                (fill as u8).into()
            };
            ArrayBuilder::new(
                vec![tiles, first, tile, tile],
                vec![1, first, tile, tile],
                data_type,
                fill,
            )
            .bytes_to_bytes_codecs(vec![
                Arc::new(ZstdCodec::new(0, false)),
                Arc::new(Crc32cCodec::new()),
            ])
            .build(store.clone(), &format!("/{name}"))
            .unwrap()
            .store_metadata()
            .unwrap();
        }
    }

    fn read_chunk<T: zarrs::array::ElementOwned>(path: &Path, name: &str, index: u64) -> Vec<T> {
        let store = Arc::new(FilesystemStore::new(path).unwrap());
        let array = Array::open(store, &format!("/{name}")).unwrap();
        array.retrieve_chunk::<Vec<T>>(&[index, 0, 0, 0]).unwrap()
    }

    #[test]
    fn written_chunks_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (h, w, tile) = (6, 8, 4);
        create_store(dir.path(), 3, 2, tile as u64, true);
        let grid = TileGrid::new(h, w, tile, 0).unwrap();
        let layout = StripeLayout::new(grid, &[1, 2], &[0, 0], Some(1)).unwrap();
        let mut writer = TileWriter::new(dir.path(), 1, layout.clone(), true).unwrap();

        // Right half of band 0 is no-data, so tile (0, 4) of the first row is skipped.
        let band0 = Array2::from_shape_fn(
            (h, w),
            |(y, x)| if x < 4 { (y * w + x + 1) as u16 } else { 0 },
        );
        let band1 = Array2::from_shape_fn((3, 4), |(y, x)| (100 + y * 4 + x) as u16);
        let labels = Array2::from_shape_fn((h, w), |(y, x)| ((y + x) % 4) as u8);
        let written = writer
            .write_row(0, &[band0.view(), band1.view()], Some(labels.view()))
            .unwrap();
        assert_eq!(written.len(), 1);
        assert_eq!((written[0].index, written[0].col_origin), (1, 0));
        assert_eq!(writer.next_index(), 2);

        let expected = cut_stripe(
            &layout,
            0,
            &[band0.view(), band1.view()],
            Some(labels.view()),
        )
        .unwrap()
        .remove(0);
        assert_eq!(read_chunk::<u16>(dir.path(), "images", 1), expected.image);
        assert_eq!(read_chunk::<u8>(dir.path(), "valid", 1), expected.valid);
        assert_eq!(
            Some(read_chunk::<u8>(dir.path(), "labels", 1)),
            expected.labels
        );

        // The second tile row: rows 4..6 of band 0 (left half valid), rows 2..3 of band 1.
        let rows = writer
            .write_row(
                4,
                &[
                    band0.slice(ndarray::s![4.., ..]),
                    band1.slice(ndarray::s![2.., ..]),
                ],
                Some(labels.slice(ndarray::s![4.., ..])),
            )
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].index, 2);
        // Index 3 does not exist: the store holds 3 tiles.
        let err = writer
            .write_row(
                4,
                &[
                    band0.slice(ndarray::s![4.., ..]),
                    band1.slice(ndarray::s![2.., ..]),
                ],
                Some(labels.slice(ndarray::s![4.., ..])),
            )
            .unwrap_err();
        assert!(matches!(err, Error::Store { .. }), "{err}");
    }

    #[test]
    fn chunks_of_only_the_fill_value_are_written_too() {
        // a missing chunk of a committed tile must mean damage, never "all fill value"
        let dir = tempfile::tempdir().unwrap();
        let (h, w, tile) = (4, 4, 4);
        create_store(dir.path(), 1, 1, tile as u64, true);
        let grid = TileGrid::new(h, w, tile, 0).unwrap();
        let layout = StripeLayout::new(grid, &[1], &[0], Some(1)).unwrap();
        let mut writer = TileWriter::new(dir.path(), 0, layout, true).unwrap();
        let band = Array2::from_elem((h, w), 7u16);
        let nodata_labels = Array2::from_elem((h, w), 255u8); // the labels' fill value
        let written = writer
            .write_row(0, &[band.view()], Some(nodata_labels.view()))
            .unwrap();
        assert_eq!(written.len(), 1);
        assert!(dir.path().join("labels/c/0/0/0/0").is_file());
        assert_eq!(read_chunk::<u8>(dir.path(), "labels", 0), vec![255u8; 16]);
    }

    #[test]
    fn mismatched_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        create_store(dir.path(), 2, 3, 4, false);
        assert!(TileArrays::open(dir.path(), 3, 4, false).is_ok());
        for (bands, tile, labels) in [(2, 4, false), (3, 5, false), (3, 4, true)] {
            let err = TileArrays::open(dir.path(), bands, tile, labels)
                .err()
                .unwrap();
            assert!(matches!(err, Error::Store { .. }), "{err}");
        }
        let missing = dir.path().join("nowhere");
        assert!(TileArrays::open(&missing, 3, 4, false).is_err());
    }
}
