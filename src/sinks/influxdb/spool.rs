//! The on-disk spool: batches InfluxDB could not take yet, kept until it answers 2xx.
//!
//! Layout under `state_dir/spool/`: two lanes, `events-<seq>.seg` and `data-<seq>.seg`
//! (sensor and zone lines), each a series of append-only segment files, plus a
//! `<lane>.cursor` file naming the next record to send. A record is
//!
//! ```text
//! len: u32 LE | crc32(body): u32 LE | body = flags: u8 | lines: u32 LE | payload
//! ```
//!
//! where the payload is one batch of line protocol, gzip-compressed exactly as it is sent
//! (flag bit 2), so a replay sends the stored bytes as they are. Each append is fsync'd.
//!
//! Design: a record is only "deleted" by moving the cursor past it after a 2xx, and a
//! segment file is removed once the cursor leaves it. The cursor file is replaced by
//! rename without fsync: a crash can at worst resend a few records that were already
//! accepted (a duplicate, which InfluxDB overwrites with the same value), never lose one.
//!
//! `spool_max` bounds the bytes on disk by removing whole segments, oldest first, from the
//! data lane before the events lane: events are kept longest. A record the spool cannot
//! hold at all is dropped. Every dropped line is counted (`spool_full`) and each episode
//! of dropping is logged once.

use super::{DropReason, Stats};
use bytes::Bytes;
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

const HEADER: u64 = 8;
const BODY_PREFIX: usize = 5;
/// No batch comes near this; a larger length field means a torn or corrupt record.
const MAX_RECORD: u32 = 256 << 20;
const FLAG_EVENTS: u8 = 1;
const FLAG_GZIP: u8 = 2;

/// The two lanes of the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    /// Sensor and zone lines: dropped first when the spool is full.
    Data = 0,
    /// Event lines: kept longest.
    Events = 1,
}

impl Lane {
    pub fn as_str(self) -> &'static str {
        crate::names::name_of(&self)
    }
}

/// One spooled batch, read back for sending. Acknowledge it with [`Spool::ack`] after a
/// 2xx (or after deciding to drop it).
#[derive(Debug, Clone)]
pub struct Record {
    pub lane: Lane,
    pub lines: u32,
    /// gzip-compressed line protocol.
    pub body: Bytes,
    seq: u64,
    offset: u64,
    end: u64,
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    /// Bytes of whole, valid records.
    len: u64,
    lines: u64,
}

#[derive(Debug)]
struct LaneState {
    /// Oldest first; when `active` is open it is the file of the last one.
    segments: VecDeque<Segment>,
    active: Option<File>,
    /// The next record to send: (segment seq, byte offset).
    cursor: (u64, u64),
    /// Lines before the cursor in the cursor's segment (already sent).
    cursor_lines: u64,
    reader: Option<(u64, File)>,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    lanes: [LaneState; 2],
    next_seq: u64,
    stats: Arc<Stats>,
    /// Dropping because of `spool_max`: logged once until the spool empties.
    dropping: bool,
}

fn seg_path(dir: &Path, lane: Lane, seq: u64) -> PathBuf {
    dir.join(format!("{}-{seq:020}.seg", lane.as_str()))
}

fn cursor_path(dir: &Path, lane: Lane) -> PathBuf {
    dir.join(format!("{}.cursor", lane.as_str()))
}

fn read_cursor(dir: &Path, lane: Lane) -> Option<(u64, u64)> {
    let text = fs::read_to_string(cursor_path(dir, lane)).ok()?;
    let mut it = text.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// A record as read: flags, line count, payload.
type Raw = (u8, u32, Vec<u8>);

/// Reads one record at the file's position. `Ok(None)` is a clean end of file; `Err`
/// describes a torn or corrupt record.
fn read_record(r: &mut impl Read) -> io::Result<Result<Option<Raw>, String>> {
    let mut header = [0u8; HEADER as usize];
    let mut got = 0;
    while got < header.len() {
        match r.read(&mut header[got..])? {
            0 if got == 0 => return Ok(Ok(None)),
            0 => return Ok(Err(format!("torn header ({got} of 8 bytes)"))),
            n => got += n,
        }
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_RECORD || (len as usize) < BODY_PREFIX {
        return Ok(Err(format!("implausible record length {len}")));
    }
    let mut body = Vec::with_capacity(len as usize);
    r.take(len as u64).read_to_end(&mut body)?;
    if body.len() < len as usize {
        return Ok(Err(format!("torn record ({} of {len} bytes)", body.len())));
    }
    if crc32fast::hash(&body) != crc {
        return Ok(Err("CRC mismatch".to_string()));
    }
    let flags = body[0];
    let lines = u32::from_le_bytes([body[1], body[2], body[3], body[4]]);
    body.drain(..BODY_PREFIX);
    Ok(Ok(Some((flags, lines, body))))
}

impl Spool {
    /// Opens (creating) the spool in `dir` and recovers what a previous run left: every
    /// segment is checked record by record; a torn or corrupt tail is cut off with a
    /// warning.
    pub fn open(
        dir: &Path,
        max_bytes: u64,
        segment_bytes: u64,
        stats: Arc<Stats>,
    ) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let mut found: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(stem) = name.strip_suffix(".seg") else {
                continue;
            };
            for lane in [Lane::Data, Lane::Events] {
                if let Some(seq) = stem
                    .strip_prefix(lane.as_str())
                    .and_then(|s| s.strip_prefix('-'))
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    found[lane as usize].push(seq);
                }
            }
        }
        let mut next_seq = 0;
        let mut lanes = Vec::new();
        for lane in [Lane::Data, Lane::Events] {
            let seqs = &mut found[lane as usize];
            seqs.sort_unstable();
            let cursor = read_cursor(dir, lane).unwrap_or((0, 0));
            next_seq = next_seq.max(cursor.0 + 1);
            let mut state = LaneState {
                segments: VecDeque::new(),
                active: None,
                cursor,
                cursor_lines: 0,
                reader: None,
            };
            for &seq in seqs.iter() {
                next_seq = next_seq.max(seq + 1);
                let path = seg_path(dir, lane, seq);
                if seq < cursor.0 {
                    // Fully sent before the last run stopped.
                    let _ = fs::remove_file(&path);
                    continue;
                }
                let (len, lines, lines_before_cursor) =
                    recover_segment(&path, (seq == cursor.0).then_some(cursor.1))?;
                if len == 0 {
                    let _ = fs::remove_file(&path);
                    continue;
                }
                if seq == cursor.0 {
                    state.cursor_lines = lines_before_cursor;
                    state.cursor.1 = state.cursor.1.min(len);
                }
                state.segments.push_back(Segment { seq, len, lines });
            }
            if state
                .segments
                .front()
                .is_none_or(|s| s.seq != state.cursor.0)
            {
                state.cursor = (state.segments.front().map_or(next_seq, |s| s.seq), 0);
                state.cursor_lines = 0;
            }
            lanes.push(state);
        }
        let [data, events]: [LaneState; 2] = lanes.try_into().expect("two lanes");
        let spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes: segment_bytes.max(1),
            lanes: [data, events],
            next_seq,
            stats,
            dropping: false,
        };
        spool.publish();
        let (bytes, points) = (spool.bytes(), spool.points());
        if points > 0 {
            tracing::warn!(dir = %dir.display(), bytes, points, "telemetry spool left by a previous run: replaying it");
        }
        Ok(spool)
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.lanes
            .iter()
            .flat_map(|l| l.segments.iter())
            .map(|s| s.len)
            .sum()
    }

    /// Lines not yet sent.
    pub fn points(&self) -> u64 {
        self.lanes
            .iter()
            .map(|l| l.segments.iter().map(|s| s.lines).sum::<u64>() - l.cursor_lines)
            .sum()
    }

    pub fn has_pending(&self, lane: Lane) -> bool {
        let l = &self.lanes[lane as usize];
        l.segments
            .iter()
            .any(|s| s.seq > l.cursor.0 || (s.seq == l.cursor.0 && l.cursor.1 < s.len))
    }

    pub fn is_empty(&self) -> bool {
        !self.has_pending(Lane::Data) && !self.has_pending(Lane::Events)
    }

    fn publish(&self) {
        self.stats
            .spool_bytes
            .store(self.bytes(), Ordering::Relaxed);
        self.stats
            .spool_points
            .store(self.points(), Ordering::Relaxed);
    }

    /// Appends one batch and fsyncs it, first making room under `spool_max`.
    pub fn append(&mut self, lane: Lane, lines: u32, gzip_body: &[u8]) -> io::Result<()> {
        let size = HEADER + BODY_PREFIX as u64 + gzip_body.len() as u64;
        while self.bytes() + size > self.max_bytes {
            // Events only ever make room by removing data or older events; data never
            // removes events.
            let victim = if !self.lanes[Lane::Data as usize].segments.is_empty() {
                Lane::Data
            } else if lane == Lane::Events && !self.lanes[Lane::Events as usize].segments.is_empty()
            {
                Lane::Events
            } else {
                self.note_dropping(lines as u64);
                self.publish();
                return Ok(());
            };
            self.drop_oldest(victim);
        }
        let result = self.write_record(lane, lines, gzip_body, size);
        self.publish();
        result
    }

    fn write_record(&mut self, lane: Lane, lines: u32, body: &[u8], size: u64) -> io::Result<()> {
        let rotate = {
            let l = &self.lanes[lane as usize];
            l.active.is_none()
                || l.segments
                    .back()
                    .is_some_and(|s| s.len > 0 && s.len + size > self.segment_bytes)
        };
        if rotate {
            let seq = self.next_seq;
            self.next_seq += 1;
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(seg_path(&self.dir, lane, seq))?;
            let l = &mut self.lanes[lane as usize];
            l.active = Some(file);
            l.segments.push_back(Segment {
                seq,
                len: 0,
                lines: 0,
            });
            if l.segments.len() == 1 {
                l.cursor = (seq, 0);
                l.cursor_lines = 0;
            }
        }
        let mut rec = Vec::with_capacity(size as usize);
        let flags = FLAG_GZIP | if lane == Lane::Events { FLAG_EVENTS } else { 0 };
        let mut crc = crc32fast::Hasher::new();
        crc.update(&[flags]);
        crc.update(&lines.to_le_bytes());
        crc.update(body);
        rec.extend_from_slice(&((BODY_PREFIX + body.len()) as u32).to_le_bytes());
        rec.extend_from_slice(&crc.finalize().to_le_bytes());
        rec.push(flags);
        rec.extend_from_slice(&lines.to_le_bytes());
        rec.extend_from_slice(body);
        let l = &mut self.lanes[lane as usize];
        let file = l.active.as_mut().expect("active segment");
        let seg = l.segments.back_mut().expect("active segment");
        let written = file.write_all(&rec).and_then(|_| file.sync_data());
        if let Err(e) = written {
            // Cut a partial record off so the segment stays readable, and start a new one.
            let _ = file.set_len(seg.len);
            l.active = None;
            return Err(e);
        }
        seg.len += size;
        seg.lines += lines as u64;
        self.stats
            .spooled
            .fetch_add(lines as u64, Ordering::Relaxed);
        Ok(())
    }

    fn note_dropping(&mut self, lines: u64) {
        self.stats.dropped(DropReason::SpoolFull, lines);
        if !self.dropping {
            self.dropping = true;
            tracing::warn!(spool_max = self.max_bytes, dir = %self.dir.display(), "telemetry spool full: dropping the oldest sensor data (events are kept); counted in dropped{{reason=\"spool_full\"}}");
        }
    }

    fn drop_oldest(&mut self, lane: Lane) {
        let l = &mut self.lanes[lane as usize];
        let Some(seg) = l.segments.pop_front() else {
            return;
        };
        let unsent = if seg.seq == l.cursor.0 {
            seg.lines - l.cursor_lines
        } else {
            seg.lines
        };
        if l.segments.is_empty() {
            l.active = None;
        }
        if l.reader.as_ref().is_some_and(|(s, _)| *s == seg.seq) {
            l.reader = None;
        }
        if l.cursor.0 <= seg.seq {
            l.cursor = (l.segments.front().map_or(self.next_seq, |s| s.seq), 0);
            l.cursor_lines = 0;
        }
        let _ = fs::remove_file(seg_path(&self.dir, lane, seg.seq));
        self.note_dropping(unsent);
    }

    /// The next unsent record of `lane`, oldest first.
    pub fn peek(&mut self, lane: Lane) -> io::Result<Option<Record>> {
        loop {
            let dir = self.dir.clone();
            let l = &mut self.lanes[lane as usize];
            let Some(pos) = l.segments.iter().position(|s| s.seq >= l.cursor.0) else {
                return Ok(None);
            };
            if l.segments[pos].seq != l.cursor.0 {
                l.cursor = (l.segments[pos].seq, 0);
                l.cursor_lines = 0;
            }
            let (seq, off) = l.cursor;
            let seg_len = l.segments[pos].len;
            if off >= seg_len {
                if pos + 1 < l.segments.len() {
                    self.finish_segment(lane);
                    continue;
                }
                return Ok(None);
            }
            if l.reader.as_ref().is_none_or(|(s, _)| *s != seq) {
                l.reader = Some((seq, File::open(seg_path(&dir, lane, seq))?));
            }
            let (_, file) = l.reader.as_mut().expect("reader");
            file.seek(SeekFrom::Start(off))?;
            let mut limited = (&mut *file).take(seg_len - off);
            match read_record(&mut limited)? {
                Ok(Some((flags, lines, payload))) => {
                    let end = off + HEADER + BODY_PREFIX as u64 + payload.len() as u64;
                    if flags & FLAG_GZIP == 0 {
                        tracing::warn!(
                            lane = lane.as_str(),
                            "spool record without gzip flag; sending as is"
                        );
                    }
                    return Ok(Some(Record {
                        lane,
                        lines,
                        body: Bytes::from(payload),
                        seq,
                        offset: off,
                        end,
                    }));
                }
                Ok(None) => return Ok(None),
                Err(why) => {
                    // Checked at open, so the disk changed under us: give up on the rest
                    // of this segment rather than resend garbage.
                    tracing::warn!(lane = lane.as_str(), segment = seq, offset = off, reason = %why, "corrupt telemetry spool record: skipping the rest of the segment");
                    l.segments[pos].len = off;
                    let tail = l.segments[pos].lines - l.cursor_lines;
                    l.segments[pos].lines = l.cursor_lines;
                    let more = pos + 1 < l.segments.len();
                    self.stats.dropped(DropReason::SpoolError, tail);
                    if more {
                        self.finish_segment(lane);
                    } else {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Marks `rec` as sent: the cursor moves past it, and a segment it leaves is removed.
    /// A record whose segment was dropped meanwhile is ignored.
    pub fn ack(&mut self, rec: &Record) -> io::Result<()> {
        let l = &mut self.lanes[rec.lane as usize];
        if l.cursor != (rec.seq, rec.offset) {
            return Ok(());
        }
        l.cursor = (rec.seq, rec.end);
        l.cursor_lines += rec.lines as u64;
        let seg_len = l
            .segments
            .iter()
            .find(|s| s.seq == rec.seq)
            .map_or(0, |s| s.len);
        if rec.end >= seg_len {
            self.finish_segment(rec.lane);
        }
        let l = &self.lanes[rec.lane as usize];
        let text = format!("{} {}\n", l.cursor.0, l.cursor.1);
        let tmp = self.dir.join(format!("{}.cursor.tmp", rec.lane.as_str()));
        fs::write(&tmp, text)?;
        fs::rename(&tmp, cursor_path(&self.dir, rec.lane))?;
        if self.is_empty() {
            self.dropping = false;
        }
        self.publish();
        Ok(())
    }

    /// Removes the cursor's segment (fully sent) and moves the cursor to the next one.
    fn finish_segment(&mut self, lane: Lane) {
        let next_seq = self.next_seq;
        let l = &mut self.lanes[lane as usize];
        let Some(pos) = l.segments.iter().position(|s| s.seq == l.cursor.0) else {
            return;
        };
        let seg = l.segments.remove(pos).expect("segment");
        if pos == l.segments.len() {
            // It was the newest, the one being appended to: the next append starts afresh.
            l.active = None;
        }
        if l.reader.as_ref().is_some_and(|(s, _)| *s == seg.seq) {
            l.reader = None;
        }
        l.cursor = (l.segments.front().map_or(next_seq, |s| s.seq), 0);
        l.cursor_lines = 0;
        let _ = fs::remove_file(seg_path(&self.dir, lane, seg.seq));
    }
}

/// Checks a segment record by record and cuts off a torn or corrupt tail. Returns the valid
/// length, its line count, and the lines before `cursor` (when given).
fn recover_segment(path: &Path, cursor: Option<u64>) -> io::Result<(u64, u64, u64)> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let total = file.metadata()?.len();
    let mut r = io::BufReader::new(&file);
    let (mut off, mut lines, mut before) = (0u64, 0u64, 0u64);
    loop {
        match read_record(&mut r)? {
            Ok(Some((_, n, payload))) => {
                if cursor.is_some_and(|c| off < c) {
                    before += n as u64;
                }
                off += HEADER + BODY_PREFIX as u64 + payload.len() as u64;
                lines += n as u64;
            }
            Ok(None) => break,
            Err(why) => {
                tracing::warn!(segment = %path.display(), offset = off, lost_bytes = total - off, reason = %why, "telemetry spool: torn or corrupt record (a crash mid-write?); cutting it off");
                drop(r);
                file.set_len(off)?;
                break;
            }
        }
    }
    Ok((off, lines, before))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, max: u64, seg: u64) -> (Spool, Arc<Stats>) {
        let stats = Arc::new(Stats::default());
        (Spool::open(dir, max, seg, stats.clone()).unwrap(), stats)
    }

    fn drain(spool: &mut Spool, lane: Lane) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(r) = spool.peek(lane).unwrap() {
            out.push(r.body.to_vec());
            spool.ack(&r).unwrap();
        }
        out
    }

    #[test]
    fn records_come_back_oldest_first_and_acked_ones_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, stats) = open(dir.path(), 1 << 20, 64);
        for i in 0..10u8 {
            s.append(Lane::Data, 2, &[i; 20]).unwrap();
        }
        assert_eq!(stats.spool_points.load(Ordering::Relaxed), 20);
        let first = s.peek(Lane::Data).unwrap().unwrap();
        assert_eq!(first.body.as_ref(), &[0u8; 20]);
        // Peeking again without an ack gives the same record.
        assert_eq!(s.peek(Lane::Data).unwrap().unwrap().body, first.body);
        s.ack(&first).unwrap();
        let rest = drain(&mut s, Lane::Data);
        assert_eq!(rest, (1..10u8).map(|i| vec![i; 20]).collect::<Vec<_>>());
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0);
        let segs = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "seg")
            })
            .count();
        assert_eq!(segs, 0, "sent segments are removed");
    }

    #[test]
    fn a_reopened_spool_resumes_after_the_last_acked_record() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = open(dir.path(), 1 << 20, 100);
            for i in 0..6u8 {
                s.append(Lane::Data, 1, &[i; 30]).unwrap();
            }
            s.append(Lane::Events, 1, b"event").unwrap();
            for _ in 0..4 {
                let r = s.peek(Lane::Data).unwrap().unwrap();
                s.ack(&r).unwrap();
            }
        }
        let (mut s, stats) = open(dir.path(), 1 << 20, 100);
        assert_eq!(stats.spool_points.load(Ordering::Relaxed), 3);
        assert_eq!(
            drain(&mut s, Lane::Data),
            vec![vec![4u8; 30], vec![5u8; 30]]
        );
        assert_eq!(drain(&mut s, Lane::Events), vec![b"event".to_vec()]);
        // New appends after a restart go on normally.
        s.append(Lane::Data, 1, b"new").unwrap();
        assert_eq!(drain(&mut s, Lane::Data), vec![b"new".to_vec()]);
    }

    #[test]
    fn a_torn_tail_record_is_cut_off_with_the_records_before_it_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = open(dir.path(), 1 << 20, 1 << 20);
            for i in 0..3u8 {
                s.append(Lane::Data, 1, &[i; 40]).unwrap();
            }
        }
        let seg = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "seg"))
            .unwrap();
        // A crash mid-write: half of a fourth record.
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[50, 0, 0, 0, 1, 2, 3, 4, 2, 1, 0]).unwrap();
        drop(f);
        let (mut s, _) = open(dir.path(), 1 << 20, 1 << 20);
        assert_eq!(
            drain(&mut s, Lane::Data),
            (0..3u8).map(|i| vec![i; 40]).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_corrupt_tail_record_fails_its_crc_and_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = open(dir.path(), 1 << 20, 1 << 20);
            for i in 0..3u8 {
                s.append(Lane::Events, 1, &[i; 40]).unwrap();
            }
        }
        let seg = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "seg"))
            .unwrap();
        let mut bytes = fs::read(&seg).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0xff;
        fs::write(&seg, bytes).unwrap();
        let (mut s, stats) = open(dir.path(), 1 << 20, 1 << 20);
        assert_eq!(stats.spool_points.load(Ordering::Relaxed), 2);
        assert_eq!(
            drain(&mut s, Lane::Events),
            vec![vec![0u8; 40], vec![1u8; 40]]
        );
    }

    #[test]
    fn spool_max_drops_the_oldest_data_first_and_keeps_events() {
        let dir = tempfile::tempdir().unwrap();
        // Records are 113 bytes; segments hold two.
        let (mut s, stats) = open(dir.path(), 1000, 250);
        s.append(Lane::Events, 1, &[0xee; 100]).unwrap();
        for i in 0..20u8 {
            s.append(Lane::Data, 10, &[i; 100]).unwrap();
        }
        s.append(Lane::Events, 1, &[0xef; 100]).unwrap();
        assert!(s.bytes() <= 1000, "{}", s.bytes());
        let dropped = stats.dropped_count(DropReason::SpoolFull);
        assert!(dropped > 0);
        assert_eq!(
            drain(&mut s, Lane::Events),
            vec![vec![0xee; 100], vec![0xef; 100]]
        );
        let data = drain(&mut s, Lane::Data);
        // What is left is the newest data, in order, and everything is accounted for.
        assert_eq!(data.last().unwrap(), &vec![19u8; 100]);
        assert!(data.windows(2).all(|w| w[0][0] + 1 == w[1][0]));
        assert_eq!(data.len() as u64 * 10 + dropped, 200);
    }

    #[test]
    fn data_never_pushes_events_out() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, stats) = open(dir.path(), 300, 1000);
        s.append(Lane::Events, 1, &[1; 100]).unwrap();
        s.append(Lane::Events, 1, &[2; 100]).unwrap();
        s.append(Lane::Data, 7, &[3; 100]).unwrap();
        assert_eq!(stats.dropped_count(DropReason::SpoolFull), 7);
        assert_eq!(drain(&mut s, Lane::Events).len(), 2);
        assert!(drain(&mut s, Lane::Data).is_empty());
    }
}
