//! `.npy` parsing on arbitrary bytes: a tensor or a one-line `npy` error, never a panic, an abort
//! or an allocation the bytes do not justify; and what parses is consistent with its header and
//! survives a write and a re-read unchanged.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use segloss::npy::{parse_header, parse_npy, to_npy_bytes};

fuzz_target!(|data: &[u8]| {
    let source = Path::new("fuzz.npy");
    let tensor = match parse_npy(data, source) {
        Ok(tensor) => tensor,
        Err(error) => {
            assert_eq!(error.kind(), "npy", "{error}");
            assert!(!error.to_string().contains(char::is_control), "{error}");
            return;
        }
    };
    let header = parse_header(data, source).expect("a parsed file has a valid header");
    assert_eq!(tensor.dtype(), header.dtype);
    assert_eq!(tensor.shape(), header.shape.as_slice());
    assert_eq!(header.element_count, header.shape.iter().product::<usize>());
    assert_eq!(
        data.len() - header.data_offset,
        header.element_count * header.dtype.item_size()
    );
    assert!(tensor.is_standard_layout());
    let written = to_npy_bytes(&tensor);
    let reread = parse_npy(&written, source).expect("a written tensor reads back");
    assert_eq!(to_npy_bytes(&reread), written);
    if !header.big_endian && !header.fortran_order {
        let written_header = parse_header(&written, source).expect("a written header parses");
        assert_eq!(
            &written[written_header.data_offset..],
            &data[header.data_offset..]
        );
    }
});


