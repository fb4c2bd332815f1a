//! Coalescing: a device's registers merged into the fewest reads (per table, at most
//! `max_registers_per_read`, reading across holes of at most `max_gap` registers).
//! Coils and discrete inputs coalesce the same way, counted in bits, up to the
//! protocol's 2000 bits per read.

use crate::config::{RegisterSpec, Table};

/// One read request and the sensors whose words it returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    pub table: Table,
    pub start: u16,
    pub count: u16,
    /// (sensor index, register spec, offset of its first word, or bit, in the reply)
    pub sensors: Vec<(u32, RegisterSpec, u16)>,
}

/// `max_per_read` limits register tables; bit tables always use the protocol's 2000.
///
/// Design: `max_registers_per_read` exists for devices that choke on long register reads;
/// we have seen no such need for bits, so they get no separate setting until one appears.
pub fn plan(mut regs: Vec<(u32, RegisterSpec)>, max_per_read: u16, max_gap: u16) -> Vec<Read> {
    regs.sort_by_key(|(s, r)| (r.table, r.address, *s));
    let mut reads: Vec<Read> = Vec::new();
    for (sensor, spec) in regs {
        let max_per_read = if spec.table.is_bits() {
            spec.table.protocol_max_per_read()
        } else {
            max_per_read
        };
        let end = spec.address as u32 + spec.kind.width() as u32; // exclusive
        if let Some(last) = reads.last_mut() {
            let last_end = last.start as u32 + last.count as u32;
            let fits_gap = (spec.address as u32) <= last_end + max_gap as u32;
            let new_count = end.max(last_end) - last.start as u32;
            if last.table == spec.table && fits_gap && new_count <= max_per_read as u32 {
                last.count = new_count as u16;
                last.sensors.push((sensor, spec, spec.address - last.start));
                continue;
            }
        }
        reads.push(Read {
            table: spec.table,
            start: spec.address,
            count: spec.kind.width(),
            sensors: vec![(sensor, spec, 0)],
        });
    }
    reads
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ByteOrder, RegType, WordOrder};

    fn r(table: Table, address: u16, kind: RegType) -> RegisterSpec {
        RegisterSpec {
            table,
            address,
            kind,
            word_order: WordOrder::HighFirst,
            byte_order: ByteOrder::Big,
            scale: 1.0,
            offset: 0.0,
            bit: None,
        }
    }

    #[test]
    fn contiguous_registers_become_one_read() {
        let p = plan(
            vec![
                (0, r(Table::Input, 0, RegType::I16)),
                (1, r(Table::Input, 1, RegType::I16)),
                (2, r(Table::Input, 2, RegType::U32)),
            ],
            125,
            0,
        );
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].start, p[0].count), (0, 4));
        assert_eq!(
            p[0].sensors.iter().map(|s| s.2).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn tables_and_gaps_split_reads() {
        let p = plan(
            vec![
                (0, r(Table::Holding, 0, RegType::U32)),
                (1, r(Table::Holding, 128, RegType::U32)),
                (2, r(Table::Holding, 135, RegType::I16)),
                (3, r(Table::Input, 0, RegType::I16)),
            ],
            125,
            8,
        );
        let shape: Vec<_> = p.iter().map(|x| (x.table, x.start, x.count)).collect();
        assert_eq!(
            shape,
            vec![
                (Table::Holding, 0, 2),
                (Table::Holding, 128, 8),
                (Table::Input, 0, 1)
            ]
        );
    }

    #[test]
    fn reads_never_exceed_the_limit() {
        let regs = (0..300u16)
            .map(|a| (a as u32, r(Table::Holding, a, RegType::U16)))
            .collect();
        let p = plan(regs, 125, 0);
        assert!(p.iter().all(|x| x.count <= 125));
        assert_eq!(p.iter().map(|x| x.count as u32).sum::<u32>(), 300);
    }

    #[test]
    fn two_flags_of_one_status_word_share_a_read() {
        let mut a = r(Table::Holding, 0, RegType::U32);
        a.bit = Some(1);
        let mut b = a;
        b.bit = Some(2);
        let p = plan(vec![(0, a), (1, b)], 125, 0);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].count, 2);
    }

    #[test]
    fn bits_coalesce_up_to_two_thousand_per_read_whatever_the_register_limit() {
        let regs = (0..4500u16)
            .map(|a| (a as u32, r(Table::Discrete, a, RegType::U16)))
            .collect();
        let p = plan(regs, 10, 0);
        let shape: Vec<_> = p.iter().map(|x| (x.start, x.count)).collect();
        assert_eq!(shape, vec![(0, 2000), (2000, 2000), (4000, 500)]);
        assert_eq!(
            p[1].sensors[7],
            (2007, r(Table::Discrete, 2007, RegType::U16), 7)
        );
    }

    #[test]
    fn bits_read_across_gaps_up_to_max_gap_and_split_beyond() {
        let p = plan(
            vec![
                (0, r(Table::Coil, 0, RegType::U16)),
                (1, r(Table::Coil, 9, RegType::U16)),
                (2, r(Table::Coil, 30, RegType::U16)),
                (3, r(Table::Discrete, 1, RegType::U16)),
                (4, r(Table::Holding, 1, RegType::U16)),
            ],
            125,
            8,
        );
        let shape: Vec<_> = p.iter().map(|x| (x.table, x.start, x.count)).collect();
        assert_eq!(
            shape,
            vec![
                (Table::Holding, 1, 1),
                (Table::Coil, 0, 10),
                (Table::Coil, 30, 1),
                (Table::Discrete, 1, 1),
            ]
        );
        assert_eq!(p[1].sensors[1].2, 9);
    }

    #[test]
    fn a_bit_read_never_takes_a_neighbouring_register() {
        // Same address in two tables: different function codes, never one read.
        let p = plan(
            vec![
                (0, r(Table::Input, 5, RegType::U16)),
                (1, r(Table::Discrete, 5, RegType::U16)),
            ],
            125,
            100,
        );
        assert_eq!(p.len(), 2);
    }
}
