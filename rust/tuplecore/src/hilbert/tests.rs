//! Unit and property tests of the Hilbert mapping.

use super::*;
use proptest::prelude::*;
use std::collections::HashSet;

fn max_coordinate(bits: u32) -> u64 {
    u64::MAX >> (64 - bits)
}

/// Every grid with `dims * bits <= 15` (up to 32,768 cells), dims 1..=5.
fn small_grids() -> Vec<(usize, u32)> {
    let mut grids = Vec::new();
    for dims in 1..=5usize {
        for bits in 1..=6u32 {
            if dims as u32 * bits <= 15 {
                grids.push((dims, bits));
            }
        }
    }
    grids
}

#[test]
fn order_one_2d_visits_up_first() {
    let expected = [([0, 0], 0), ([0, 1], 1), ([1, 1], 2), ([1, 0], 3)];
    for (point, index) in expected {
        assert_eq!(encode(&point, 1).unwrap(), index);
        assert_eq!(decode(index, 2, 1).unwrap(), point);
    }
}

#[test]
fn order_two_2d_matches_the_paper_orientation() {
    // Skilling's curve flips its first step with the parity of `bits`: order 2 starts along
    // axis 0 and ends at (3, 0). Same sequence as the `hilbertcurve` package.
    #[rustfmt::skip]
    let expected: [[u64; 2]; 16] = [
        [0, 0], [1, 0], [1, 1], [0, 1], [0, 2], [0, 3], [1, 3], [1, 2],
        [2, 2], [2, 3], [3, 3], [3, 2], [3, 1], [2, 1], [2, 0], [3, 0],
    ];
    for (index, point) in expected.iter().enumerate() {
        assert_eq!(decode(index as u128, 2, 2).unwrap(), point);
        assert_eq!(encode(point, 2).unwrap(), index as u128);
    }
}

#[test]
fn order_one_3d_is_the_gray_code() {
    #[rustfmt::skip]
    let expected: [[u64; 3]; 8] = [
        [0, 0, 0], [0, 0, 1], [0, 1, 1], [0, 1, 0],
        [1, 1, 0], [1, 1, 1], [1, 0, 1], [1, 0, 0],
    ];
    for (index, point) in expected.iter().enumerate() {
        assert_eq!(decode(index as u128, 3, 1).unwrap(), point);
        assert_eq!(encode(point, 1).unwrap(), index as u128);
    }
}

#[test]
fn values_computed_by_the_hilbertcurve_package() {
    // `HilbertCurve(p=bits, n=dims).distance_from_point(point)` from `hilbertcurve` 2.0.5.
    let cases: [(&[u64], u32, u128); 10] = [
        (&[2, 7, 1, 3], 3, 1909),
        (&[5, 0, 0, 6], 3, 3731),
        (&[8, 1, 5, 9, 0], 4, 933_141),
        (&[14, 8, 3, 0, 1], 4, 532_290),
        (
            &[28419, 27405, 4578, 15772, 5944, 36113, 27821, 3873],
            16,
            10_289_713_186_374_531_162_542_432_684_781_687_823,
        ),
        (
            &[54188, 37057, 8113, 62092, 14630, 41328, 41119, 38207],
            16,
            205_783_266_677_220_349_863_887_390_846_191_750_598,
        ),
        (
            &[1_141_153_371_300_629_929, 10_801_332_806_156_616_911],
            64,
            87_417_655_061_022_658_744_670_099_908_906_950_204,
        ),
        (
            &[914_761_360_679_426_580, 4_078_239_883_182_463_692],
            64,
            7_612_645_892_521_846_998_192_319_403_391_081_312,
        ),
        (
            &[2_448_331_429_808, 587_802_646_219, 1_843_784_832_406],
            42,
            78_857_335_256_242_543_848_514_228_487_847_798_773,
        ),
        (
            &[2_375_736_485_540, 2_508_766_814_656, 2_462_341_179_960],
            42,
            53_321_387_983_529_176_843_186_481_625_516_227_574,
        ),
    ];
    for (point, bits, index) in cases {
        assert_eq!(encode(point, bits).unwrap(), index, "{point:?}");
        assert_eq!(decode(index, point.len(), bits).unwrap(), point);
        assert_eq!(skilling_encode(point, bits), index, "{point:?}");
    }
}

#[test]
fn one_dimension_is_the_identity() {
    for bits in [1, 7, 63, 64] {
        for v in [0, 1, max_coordinate(bits) / 2, max_coordinate(bits)] {
            assert_eq!(encode(&[v], bits).unwrap(), u128::from(v));
            assert_eq!(decode(u128::from(v), 1, bits).unwrap(), [v]);
        }
    }
    assert_eq!(encode_1d(u128::MAX, 128).unwrap(), u128::MAX);
    assert_eq!(decode_1d(u128::MAX, 128).unwrap(), u128::MAX);
    assert_eq!(encode_1d(5, 3).unwrap(), 5);
}

#[test]
fn small_grids_are_bijections() {
    for (dims, bits) in small_grids() {
        let cells = 1u128 << (dims as u32 * bits);
        let mut seen = HashSet::new();
        for index in 0..cells {
            let point = decode(index, dims, bits).unwrap();
            assert!(
                point.iter().all(|&v| v <= max_coordinate(bits)),
                "{point:?}"
            );
            assert!(
                seen.insert(point.clone()),
                "{dims}-d {bits} bits: {point:?} twice"
            );
            assert_eq!(encode(&point, bits).unwrap(), index, "{dims}-d {bits} bits");
        }
        assert_eq!(seen.len() as u128, cells);
    }
}

#[test]
fn consecutive_indices_are_grid_neighbours() {
    for (dims, bits) in small_grids() {
        let cells = 1u128 << (dims as u32 * bits);
        let mut previous = decode(0, dims, bits).unwrap();
        assert!(
            previous.iter().all(|&v| v == 0),
            "the curve starts at the origin"
        );
        for index in 1..cells {
            let point = decode(index, dims, bits).unwrap();
            let distance: u64 = point
                .iter()
                .zip(&previous)
                .map(|(a, b)| a.abs_diff(*b))
                .sum();
            assert_eq!(
                distance, 1,
                "{dims}-d {bits} bits: {previous:?} -> {point:?}"
            );
            previous = point;
        }
    }
}

#[test]
fn tables_match_skilling_on_small_grids() {
    for (dims, bits) in [
        (2usize, 1u32),
        (2, 2),
        (2, 3),
        (2, 7),
        (3, 1),
        (3, 2),
        (3, 3),
        (3, 5),
    ] {
        for index in 0..1u128 << (dims as u32 * bits) {
            let mut expected = vec![0; dims];
            skilling_decode(index, bits, &mut expected);
            let mut got = vec![0; dims];
            decode_unchecked(index, bits, &mut got);
            assert_eq!(got, expected, "{dims}-d {bits} bits, index {index}");
            assert_eq!(skilling_encode(&got, bits), index);
        }
    }
}

#[test]
fn state_counts_are_as_derived() {
    // (signed permutation, parity) reachable from the start: 4 * 2 in 2-d, 24 * 2 in 3-d.
    assert_eq!(TABLES_2D.encode_one.len(), 8 << 2);
    assert_eq!(TABLES_3D.encode_one.len(), 48 << 3);
}

#[test]
fn full_width_corners_round_trip() {
    let max = u64::MAX;
    for point in [[0, 0], [max, 0], [0, max], [max, max], [max, 1]] {
        let index = encode(&point, 64).unwrap();
        assert_eq!(decode(index, 2, 64).unwrap(), point);
    }
    assert_eq!(
        encode(&decode(u128::MAX, 2, 64).unwrap(), 64).unwrap(),
        u128::MAX
    );
    let corner = [u64::from(u16::MAX); 8];
    assert_eq!(decode(encode(&corner, 16).unwrap(), 8, 16).unwrap(), corner);
    assert_eq!(
        encode(&decode(u128::MAX, 8, 16).unwrap(), 16).unwrap(),
        u128::MAX
    );
    let ones = vec![1; 128];
    assert_eq!(decode(encode(&ones, 1).unwrap(), 128, 1).unwrap(), ones);
    let top = (1u128 << 126) - 1;
    assert_eq!(encode(&decode(top, 3, 42).unwrap(), 42).unwrap(), top);
}

#[test]
fn parameter_errors_name_the_value_and_the_limit() {
    let message = |r: Result<u128>| match r.unwrap_err() {
        Error::Coordinate { detail } => detail,
        other => panic!("expected a coordinate error, got {other:?}"),
    };
    assert_eq!(message(encode(&[], 3)), "dims must be at least 1, got 0");
    assert_eq!(
        message(encode(&[1, 2], 0)),
        "bits must be between 1 and 64, got 0"
    );
    assert_eq!(
        message(encode(&[1, 2], 65)),
        "bits must be between 1 and 64, got 65"
    );
    assert_eq!(
        message(encode(&[0; 3], 43)),
        "dims * bits must be at most 128, got 3 * 43 = 129"
    );
    assert_eq!(
        message(encode(&[1, 8, 3], 3)),
        "coordinate 1 = 8 is out of range: must be < 2^3 = 8"
    );
    assert_eq!(
        message(decode(64, 3, 2).map(|_| 0)),
        "index = 64 is out of range for dims = 3, bits = 2: must be < 2^6 = 64"
    );
    assert!(matches!(decode(0, 0, 4), Err(Error::Coordinate { .. })));
    assert!(matches!(decode(0, 129, 1), Err(Error::Coordinate { .. })));
    assert!(matches!(
        decode_into(0, 4, &mut []),
        Err(Error::Coordinate { .. })
    ));
    assert!(matches!(encode_1d(8, 3), Err(Error::Coordinate { .. })));
    assert!(matches!(encode_1d(0, 129), Err(Error::Coordinate { .. })));
    assert!(matches!(decode_1d(0, 0), Err(Error::Coordinate { .. })));
    // The largest values in range are accepted.
    assert!(encode(&[7, 7, 7], 3).is_ok());
    assert!(decode(63, 3, 2).is_ok());
}

#[test]
fn batch_errors_name_the_point_and_leave_out_unchanged() {
    let mut out = vec![42u128];
    let err = encode_batch(&[1, 2, 3, 4, 5], 2, 8, &mut out).unwrap_err();
    assert!(matches!(err, Error::Arity { .. }), "{err:?}");
    let err = encode_batch(&[1, 2, 3, 400], 2, 8, &mut out).unwrap_err();
    assert_eq!(
        err,
        Error::Coordinate {
            detail: "point 1, coordinate 1 = 400 is out of range: must be < 2^8 = 256".into()
        }
    );
    assert_eq!(out, [42]);
    let mut out64 = vec![7u64];
    let err = encode_batch_u64(&[1, 2], 2, 33, &mut out64).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    let err = decode_batch_u64(&[1, 2, 1 << 16], 2, 8, &mut out64).unwrap_err();
    assert_eq!(
        err,
        Error::Coordinate {
            detail:
                "index 2 = 65536 is out of range for dims = 2, bits = 8: must be < 2^16 = 65536"
                    .into()
        }
    );
    assert!(decode_batch(&[1 << 16], 2, 8, &mut out64).is_err());
    assert_eq!(out64, [7]);
}

fn point_and_bits(max_dims: usize) -> impl Strategy<Value = (Vec<u64>, u32)> {
    (1..=max_dims).prop_flat_map(|dims| {
        let max_bits = (128 / dims as u32).min(64);
        (1..=max_bits).prop_flat_map(move |bits| {
            (
                proptest::collection::vec(0..=max_coordinate(bits), dims),
                Just(bits),
            )
        })
    })
}

proptest! {
    #[test]
    fn decode_inverts_encode((point, bits) in point_and_bits(8)) {
        let index = encode(&point, bits).unwrap();
        prop_assert!(point.len() as u32 * bits == 128 || index >> (point.len() as u32 * bits) == 0);
        prop_assert_eq!(decode(index, point.len(), bits).unwrap(), point);
    }

    #[test]
    fn wide_points_round_trip((point, bits) in point_and_bits(128)) {
        let index = encode(&point, bits).unwrap();
        prop_assert_eq!(decode(index, point.len(), bits).unwrap(), point);
    }

    #[test]
    fn encode_inverts_decode(index in any::<u128>(), dims in 1usize..=8) {
        let bits = (128 / dims as u32).min(64);
        let total = dims as u32 * bits;
        let index = if total == 128 { index } else { index & ((1 << total) - 1) };
        let point = decode(index, dims, bits).unwrap();
        prop_assert_eq!(encode(&point, bits).unwrap(), index);
    }

    #[test]
    fn tables_match_skilling((point, bits) in (2usize..=3).prop_flat_map(|dims| {
        let max_bits = (128 / dims as u32).min(64);
        (1..=max_bits).prop_flat_map(move |bits| {
            (proptest::collection::vec(0..=max_coordinate(bits), dims), Just(bits))
        })
    })) {
        let index = skilling_encode(&point, bits);
        prop_assert_eq!(encode_unchecked(&point, bits), index);
        let mut got = vec![0; point.len()];
        decode_unchecked(index, bits, &mut got);
        prop_assert_eq!(got, point);
    }

    #[test]
    fn batches_equal_scalar_calls(
        (flat, dims, bits) in (1usize..=6).prop_flat_map(|dims| {
            let max_bits = (128 / dims as u32).min(64);
            (1..=max_bits).prop_flat_map(move |bits| (
                proptest::collection::vec(0..=max_coordinate(bits), 0..=8 * dims)
                    .prop_map(move |mut v| { v.truncate(v.len() / dims * dims); v }),
                Just(dims),
                Just(bits),
            ))
        })
    ) {
        let mut indices = Vec::new();
        encode_batch(&flat, dims, bits, &mut indices).unwrap();
        let scalar: Vec<u128> =
            flat.chunks_exact(dims).map(|p| encode(p, bits).unwrap()).collect();
        prop_assert_eq!(&indices, &scalar);
        let mut points = Vec::new();
        decode_batch(&indices, dims, bits, &mut points).unwrap();
        prop_assert_eq!(&points, &flat);
        if dims as u32 * bits <= 64 {
            let mut narrow = Vec::new();
            encode_batch_u64(&flat, dims, bits, &mut narrow).unwrap();
            prop_assert!(narrow.iter().map(|&h| u128::from(h)).eq(indices.iter().copied()));
            let mut points = Vec::new();
            decode_batch_u64(&narrow, dims, bits, &mut points).unwrap();
            prop_assert_eq!(&points, &flat);
        }
    }
}
