//! Where a file's data bytes go: a file node's content is its chunks concatenated (the data),
//! laid out around its holes. This maps positions in the data to offsets in the file.

/// The data extents `(file offset, length)` of a file, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extents {
    /// (file offset, length, data position of its first byte)
    runs: Vec<(u64, u64, u64)>,
    data_len: u64,
    size: u64,
}

impl Extents {
    /// The extents of a file of `size` bytes with `holes`; `None` when the holes are out of
    /// order, empty, overlap or pass the end (a damaged or hostile tree).
    pub fn new(holes: &[(u64, u64)], size: u64) -> Option<Self> {
        let mut runs = Vec::with_capacity(holes.len() + 1);
        let mut pos = 0u64;
        let mut data = 0u64;
        let mut push = |off: u64, len: u64, runs: &mut Vec<(u64, u64, u64)>| {
            runs.push((off, len, data));
            data += len;
        };
        for &(off, len) in holes {
            let end = off.checked_add(len)?;
            if off < pos || end > size || len == 0 {
                return None;
            }
            if off > pos {
                push(pos, off - pos, &mut runs);
            }
            pos = end;
        }
        if size > pos {
            push(pos, size - pos, &mut runs);
        }
        let data_len = runs.last().map_or(0, |&(_, len, d)| d + len);
        Some(Extents { runs, data_len, size })
    }

    /// Total data bytes (the size minus the holes).
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    /// The file pieces `(offset, length)` that data bytes `data_pos .. data_pos + len` occupy;
    /// stops early at the end of the data (the caller checks the lengths add up).
    pub fn pieces(&self, data_pos: u64, len: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let start = self.runs.partition_point(|&(_, l, d)| d + l <= data_pos);
        let (mut pos, end) = (data_pos, data_pos.saturating_add(len));
        for &(off, l, d) in self.runs.get(start..).unwrap_or_default() {
            if pos >= end {
                break;
            }
            let within = pos - d;
            let take = (l - within).min(end - pos);
            out.push((off + within, take));
            pos += take;
        }
        out
    }

    /// What file bytes `offset .. offset + len` hold, clipped to the file's size: in order,
    /// `(length, Some(data position))` for a run of data and `(length, None)` for a run of a
    /// hole. The inverse of [`Extents::pieces`], for reads at any offset (a mounted snapshot).
    pub fn segments(&self, offset: u64, len: u64) -> Vec<(u64, Option<u64>)> {
        let end = offset.saturating_add(len).min(self.size);
        let mut out = Vec::new();
        let mut pos = offset;
        let mut runs = self.runs.get(self.runs.partition_point(|&(off, l, _)| off + l <= pos)..).unwrap_or_default();
        while pos < end {
            let (take, data) = match runs.first() {
                Some(&(off, l, d)) if off <= pos => {
                    runs = runs.get(1..).unwrap_or_default();
                    ((off + l).min(end) - pos, Some(d + (pos - off)))
                }
                Some(&(off, _, _)) => (off.min(end) - pos, None),
                None => (end - pos, None),
            };
            out.push((take, data));
            pos += take;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Extents;

    #[test]
    fn extents_are_the_complement_of_valid_holes_only() {
        let runs =
            |h: &[(u64, u64)], s| Extents::new(h, s).map(|e| e.runs.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>());
        assert_eq!(runs(&[], 5), Some(vec![(0, 5)]));
        assert_eq!(runs(&[(0, 5)], 5), Some(vec![]));
        assert_eq!(runs(&[(2, 1), (4, 2)], 8), Some(vec![(0, 2), (3, 1), (6, 2)]));
        assert_eq!(runs(&[(4, 2), (2, 1)], 8), None, "out of order");
        assert_eq!(runs(&[(2, 3), (4, 2)], 8), None, "overlapping");
        assert_eq!(runs(&[(6, 3)], 8), None, "past the end");
        assert_eq!(runs(&[(u64::MAX, 2)], 8), None, "overflow");
    }

    #[test]
    fn data_positions_map_around_holes() {
        // Data runs: [0,2) [3,4) [6,8): data positions 0-1, 2, 3-4.
        let e = Extents::new(&[(2, 1), (4, 2)], 8).unwrap();
        assert_eq!(e.data_len(), 5);
        assert_eq!(e.pieces(0, 5), vec![(0, 2), (3, 1), (6, 2)]);
        assert_eq!(e.pieces(1, 2), vec![(1, 1), (3, 1)]);
        assert_eq!(e.pieces(3, 1), vec![(6, 1)]);
        assert_eq!(e.pieces(4, 10), vec![(7, 1)], "clipped at the end of the data");
        let dense = Extents::new(&[], 10).unwrap();
        assert_eq!(dense.pieces(3, 4), vec![(3, 4)]);
    }

    #[test]
    fn file_ranges_map_to_data_and_holes() {
        // File bytes: data 0-1 (data 0-1), hole 2, data 3 (data 2), hole 4-5, data 6-7 (data 3-4).
        let e = Extents::new(&[(2, 1), (4, 2)], 8).unwrap();
        assert_eq!(e.segments(0, 8), vec![(2, Some(0)), (1, None), (1, Some(2)), (2, None), (2, Some(3))]);
        assert_eq!(e.segments(1, 3), vec![(1, Some(1)), (1, None), (1, Some(2))]);
        assert_eq!(e.segments(5, 100), vec![(1, None), (2, Some(3))], "clipped at the end of the file");
        assert_eq!(e.segments(7, 1), vec![(1, Some(4))]);
        assert_eq!(e.segments(8, 4), vec![], "at the end");
        let trailing_hole = Extents::new(&[(3, 5)], 8).unwrap();
        assert_eq!(trailing_hole.segments(2, 10), vec![(1, Some(2)), (5, None)]);
        let all_hole = Extents::new(&[(0, 4)], 4).unwrap();
        assert_eq!(all_hole.segments(1, 2), vec![(2, None)]);
    }
}
