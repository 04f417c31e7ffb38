//! Reading and writing capture files for `replay`.
//!
//! Input: pcap (micro- and nanosecond, either byte order) and pcapng (several
//! interfaces, any `if_tsresol`), with Ethernet, raw IPv4/IPv6 and Linux
//! cooked (v1, v2) link types; any other link type is refused with the file's
//! name. Records are read raw so that a capture cut by its snap length is
//! still read (its frames are then dropped as `truncated`, not refused).
//! Output: one pcap per port, Ethernet, nanosecond timestamps.

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter, RawPcapPacket};
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{DataLink, TsResolution};
use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

use edgefwd_core::packet::{MacAddr, ETHERTYPE_IPV4, ETHERTYPE_IPV6};

/// Link types `replay` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// Ethernet II.
    Ethernet,
    /// Raw IPv4 or IPv6, no link header.
    RawIp,
    /// Linux cooked capture v1 (16-byte header).
    LinuxSll,
    /// Linux cooked capture v2 (20-byte header).
    LinuxSll2,
}

impl LinkType {
    fn from_datalink(d: DataLink) -> Option<Self> {
        match d {
            DataLink::ETHERNET => Some(LinkType::Ethernet),
            // 12 and 14 are DLT_RAW on some BSDs; libpcap reads both as raw IP.
            DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 | DataLink::Unknown(12 | 14) => {
                Some(LinkType::RawIp)
            }
            DataLink::LINUX_SLL => Some(LinkType::LinuxSll),
            DataLink::LINUX_SLL2 => Some(LinkType::LinuxSll2),
            _ => None,
        }
    }
}

/// One captured frame.
#[derive(Clone, Debug)]
pub struct Record {
    /// Capture time since the Unix epoch.
    pub ts: Duration,
    /// Link type of `data`.
    pub link: LinkType,
    /// The bytes captured.
    pub data: Vec<u8>,
    /// Length on the wire (more than `data.len()` when the capture cut it).
    pub orig_len: u32,
}

impl Record {
    /// True when the whole frame was captured.
    pub fn whole(&self) -> bool {
        self.orig_len as usize <= self.data.len()
    }
}

/// A capture file that cannot be read, with the file's name.
#[derive(Debug)]
pub struct TraceError {
    /// The file.
    pub file: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.message)
    }
}

impl std::error::Error for TraceError {}

enum Inner<R: Read> {
    Pcap {
        r: PcapReader<R>,
        link: LinkType,
        nanos: bool,
    },
    PcapNg {
        r: PcapNgReader<R>,
        links: Vec<(DataLink, u8)>,
    },
}

/// A capture file being read.
pub struct TraceReader<R: Read> {
    name: String,
    inner: Inner<R>,
    index: usize,
}

const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

impl TraceReader<io::Chain<io::Cursor<Vec<u8>>, Box<dyn Read + Send>>> {
    /// Opens a capture file.
    pub fn open(path: &Path) -> Result<Self, TraceError> {
        let name = path.display().to_string();
        let f = std::fs::File::open(path).map_err(|e| TraceError {
            file: name.clone(),
            message: format!("cannot open: {e}"),
        })?;
        Self::from_reader(name, Box::new(io::BufReader::new(f)))
    }

    /// Reads a capture from any reader; `name` is used in errors.
    pub fn from_reader(name: String, mut r: Box<dyn Read + Send>) -> Result<Self, TraceError> {
        let err = |message: String| TraceError {
            file: name.clone(),
            message,
        };
        let mut magic = Vec::with_capacity(4);
        (&mut r)
            .take(4)
            .read_to_end(&mut magic)
            .map_err(|e| err(format!("cannot read: {e}")))?;
        if magic.is_empty() {
            return Err(err("empty file: not a pcap or pcapng capture".into()));
        }
        let is_ng = magic == PCAPNG_MAGIC;
        let r = io::Cursor::new(magic).chain(r);
        let inner = if is_ng {
            let r = PcapNgReader::new(r)
                .map_err(|e| err(format!("not a readable pcapng file: {e}")))?;
            Inner::PcapNg {
                r,
                links: Vec::new(),
            }
        } else {
            let r = PcapReader::new(r)
                .map_err(|e| err(format!("not a pcap or pcapng capture: {e}")))?;
            let header = r.header();
            let link = LinkType::from_datalink(header.datalink)
                .ok_or_else(|| err(unsupported(header.datalink)))?;
            Inner::Pcap {
                r,
                link,
                nanos: header.ts_resolution == TsResolution::NanoSecond,
            }
        };
        Ok(TraceReader {
            name,
            inner,
            index: 0,
        })
    }
}

fn unsupported(d: DataLink) -> String {
    let name = match d {
        DataLink::Unknown(_) => String::new(),
        known => format!("{known:?} "),
    };
    format!(
        "link type {name}({}) is not supported (edgefwd reads Ethernet, raw IPv4/IPv6 and Linux cooked captures)",
        u32::from(d)
    )
}

impl<R: Read> TraceReader<R> {
    /// The file's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next frame, `Ok(None)` at the end. An error leaves the rest of
    /// the file unread.
    pub fn next_record(&mut self) -> Result<Option<Record>, TraceError> {
        let name = &self.name;
        let index = self.index;
        let err = |m: String| TraceError {
            file: name.clone(),
            message: format!("record {}: {m}", index + 1),
        };
        let rec = match &mut self.inner {
            Inner::Pcap { r, link, nanos } => match r.next_raw_packet() {
                None => None,
                Some(Err(e)) => return Err(err(e.to_string())),
                Some(Ok(RawPcapPacket {
                    ts_sec,
                    ts_frac,
                    orig_len,
                    data,
                    ..
                })) => {
                    let frac = if *nanos {
                        u64::from(ts_frac)
                    } else {
                        u64::from(ts_frac) * 1000
                    };
                    let ts = Duration::from_secs(u64::from(ts_sec)) + Duration::from_nanos(frac);
                    Some(Record {
                        ts,
                        link: *link,
                        data: data.into_owned(),
                        orig_len,
                    })
                }
            },
            Inner::PcapNg { r, links } => loop {
                match r.next_block() {
                    None => break None,
                    Some(Err(e)) => return Err(err(e.to_string())),
                    Some(Ok(Block::InterfaceDescription(idb))) => {
                        let resol = idb.options.iter().find_map(|o| match o {
                            InterfaceDescriptionOption::IfTsResol(v) => Some(*v),
                            _ => None,
                        });
                        links.push((idb.linktype, resol.unwrap_or(6)));
                    }
                    Some(Ok(Block::SectionHeader(_))) => links.clear(),
                    Some(Ok(Block::EnhancedPacket(epb))) => {
                        let Some(&(link, resol)) = links.get(epb.interface_id as usize) else {
                            return Err(err(format!(
                                "packet on undeclared interface {}",
                                epb.interface_id
                            )));
                        };
                        let link =
                            LinkType::from_datalink(link).ok_or_else(|| err(unsupported(link)))?;
                        // pcap-file reads the raw tick count into the duration's nanoseconds.
                        let ts = scale(epb.timestamp.as_nanos(), resol);
                        break Some(Record {
                            ts,
                            link,
                            data: epb.data.into_owned(),
                            orig_len: epb.original_len,
                        });
                    }
                    Some(Ok(Block::SimplePacket(spb))) => {
                        let Some(&(link, _)) = links.first() else {
                            return Err(err("simple packet before any interface".into()));
                        };
                        let link =
                            LinkType::from_datalink(link).ok_or_else(|| err(unsupported(link)))?;
                        break Some(Record {
                            ts: Duration::ZERO,
                            link,
                            data: spb.data.into_owned(),
                            orig_len: spb.original_len,
                        });
                    }
                    Some(Ok(_)) => {}
                }
            },
        };
        if rec.is_some() {
            self.index += 1;
        }
        Ok(rec)
    }
}

/// Converts pcapng timestamp ticks to a duration (`if_tsresol`: 10^-n s, or
/// 2^-n s with the high bit set).
fn scale(ticks: u128, resol: u8) -> Duration {
    let n = u32::from(resol & 0x7f);
    let nanos = if resol & 0x80 != 0 {
        ticks.saturating_mul(1_000_000_000) >> n.min(127)
    } else if n <= 9 {
        ticks.saturating_mul(10u128.pow(9 - n))
    } else {
        ticks / 10u128.pow((n - 9).min(38))
    };
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The source MAC given to frames that had no Ethernet header (raw IP).
pub const SYNTHETIC_MAC: MacAddr = MacAddr([0x02, 0xed, 0x9f, 0, 0, 1]);

/// Turns a record into an Ethernet frame addressed to `port_mac` in `out`.
/// A record too short to hold its own link header is copied as it is, so
/// the router counts it as a runt.
pub fn to_ethernet(rec: &Record, port_mac: MacAddr, out: &mut Vec<u8>) {
    out.clear();
    let d = &rec.data;
    let (src, ethertype, payload) = match rec.link {
        LinkType::Ethernet => return out.extend_from_slice(d),
        LinkType::RawIp => {
            let et = match d.first().map(|b| b >> 4) {
                Some(6) => ETHERTYPE_IPV6,
                _ => ETHERTYPE_IPV4,
            };
            (SYNTHETIC_MAC, et, &d[..])
        }
        LinkType::LinuxSll => {
            if d.len() < 16 {
                return out.extend_from_slice(d);
            }
            let alen = usize::from(u16::from_be_bytes([d[4], d[5]]));
            let src = if alen == 6 {
                MacAddr::from_slice(&d[6..12]).unwrap_or(SYNTHETIC_MAC)
            } else {
                SYNTHETIC_MAC
            };
            (src, u16::from_be_bytes([d[14], d[15]]), &d[16..])
        }
        LinkType::LinuxSll2 => {
            if d.len() < 20 {
                return out.extend_from_slice(d);
            }
            let src = if d[11] == 6 {
                MacAddr::from_slice(&d[12..18]).unwrap_or(SYNTHETIC_MAC)
            } else {
                SYNTHETIC_MAC
            };
            (src, u16::from_be_bytes([d[0], d[1]]), &d[20..])
        }
    };
    out.extend_from_slice(&port_mac.0);
    out.extend_from_slice(&src.0);
    out.extend_from_slice(&ethertype.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Writes Ethernet frames to a pcap file.
pub struct TraceWriter<W: Write> {
    w: PcapWriter<W>,
    /// Frames written.
    pub count: u64,
}

impl<W: Write> TraceWriter<W> {
    /// Starts a pcap (Ethernet, nanosecond timestamps).
    pub fn new(w: W) -> io::Result<Self> {
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::NanoSecond,
            snaplen: 262_144,
            ..Default::default()
        };
        let w = PcapWriter::with_header(w, header).map_err(io::Error::other)?;
        Ok(TraceWriter { w, count: 0 })
    }

    /// Appends a frame.
    pub fn write(&mut self, ts: Duration, frame: &[u8]) -> io::Result<()> {
        let p = PcapPacket::new(ts, frame.len() as u32, frame);
        self.w.write_packet(&p).map_err(io::Error::other)?;
        self.count += 1;
        Ok(())
    }

    /// Finishes the file and returns the writer.
    pub fn into_inner(self) -> W {
        self.w.into_writer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcapng_resolutions() {
        assert_eq!(scale(1_500_000, 6), Duration::from_millis(1500));
        assert_eq!(scale(1_500_000_000, 9), Duration::from_millis(1500));
        assert_eq!(scale(3 << 20, 0x80 | 20), Duration::from_secs(3));
    }

    #[test]
    fn write_then_read_back() {
        let mut w = TraceWriter::new(Vec::new()).unwrap();
        w.write(Duration::new(5, 123), &[1, 2, 3]).unwrap();
        let bytes = w.into_inner();
        let mut r =
            TraceReader::from_reader("mem".into(), Box::new(io::Cursor::new(bytes))).unwrap();
        let rec = r.next_record().unwrap().unwrap();
        assert_eq!(
            (rec.ts, rec.data.as_slice(), rec.link),
            (Duration::new(5, 123), &[1u8, 2, 3][..], LinkType::Ethernet)
        );
        assert!(r.next_record().unwrap().is_none());
    }

    #[test]
    fn empty_and_garbage_files_are_clear_errors() {
        let e = TraceReader::from_reader("a.pcap".into(), Box::new(io::empty()))
            .err()
            .unwrap();
        assert!(e.to_string().starts_with("a.pcap: empty file"), "{e}");
        let e = TraceReader::from_reader(
            "b.pcap".into(),
            Box::new(io::Cursor::new(b"hello world, no pcap".to_vec())),
        )
        .err()
        .unwrap();
        assert!(e.to_string().starts_with("b.pcap: not a pcap"), "{e}");
    }

    #[test]
    fn cooked_record_shorter_than_its_header_is_passed_as_it_is() {
        let rec = Record {
            ts: Duration::ZERO,
            link: LinkType::LinuxSll,
            data: vec![0; 10],
            orig_len: 10,
        };
        let mut out = vec![1, 2, 3];
        to_ethernet(&rec, MacAddr([2, 0, 0, 0, 0, 9]), &mut out);
        assert_eq!(out, vec![0; 10]);
    }

    #[test]
    fn raw_ip_gets_an_ethernet_header() {
        let rec = Record {
            ts: Duration::ZERO,
            link: LinkType::RawIp,
            data: vec![0x45, 0, 0, 20],
            orig_len: 4,
        };
        let mut out = Vec::new();
        to_ethernet(&rec, MacAddr([2, 0, 0, 0, 0, 9]), &mut out);
        assert_eq!(&out[..6], &[2, 0, 0, 0, 0, 9]);
        assert_eq!(&out[12..14], &[8, 0]);
        assert_eq!(&out[14..], &[0x45, 0, 0, 20]);
    }
}
