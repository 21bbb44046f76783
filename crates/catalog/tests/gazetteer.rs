//! Location resolution over the demo gazetteer of 光明区.

use minyi_catalog::gazetteer::{Area, Place, UnresolvedReason};
use minyi_catalog::{Gazetteer, Resolution, UnitDirectory, Via};

fn text(s: &str) -> Resolution {
    Gazetteer::guangming().resolve_text(s)
}

fn resolved(street: &str, community: Option<&str>, via: Via) -> Resolution {
    Resolution::Resolved {
        street: street.into(),
        community: community.map(str::to_string),
        via,
    }
}

#[test]
fn longest_match_wins() {
    assert_eq!(
        text("公明街道上村社区莲塘工业区3栋门口垃圾没人收"),
        resolved("ST-GOM", Some("CM-GOM-SHANGCUN"), Via::Text)
    );
    // 楼村湿地公园 (6) beats 楼村 (2).
    assert_eq!(
        text("楼村湿地公园旁边有人烧垃圾"),
        resolved("ST-XH", Some("CM-XH-LOUCUN"), Via::Text)
    );
    // 光明文化艺术中心 is in 凤凰 even though it contains 光明.
    assert_eq!(
        text("光明文化艺术中心门口占道经营"),
        resolved("ST-FH", Some("CM-FH-FENGHUANG"), Via::Text)
    );
    assert_eq!(
        text("光明大街12号"),
        resolved("ST-GM", Some("CM-GM-GUANGMING"), Via::Text)
    );
    assert_eq!(
        text("在华 星 光 电门口"),
        resolved("ST-FH", Some("CM-FH-TANGJIA"), Via::Text)
    );
    assert_eq!(
        text("李松朗村"),
        resolved("ST-GOM", Some("CM-GOM-LISONGLANG"), Via::Text)
    );
}

#[test]
fn street_only_when_no_community_is_named() {
    assert_eq!(
        text("马田街道某工地夜间施工"),
        resolved("ST-MT", None, Via::Text)
    );
    // Street and community of the same length and street: the community is kept.
    assert_eq!(
        text("马田街道马田社区"),
        resolved("ST-MT", Some("CM-MT-MATIAN"), Via::Text)
    );
}

#[test]
fn ambiguous_text_is_unresolved() {
    assert_eq!(
        text("从公明广场一直到光明大街都有流动摊贩"),
        Resolution::Unresolved {
            reason: UnresolvedReason::Ambiguous(vec!["ST-GM".into(), "ST-GOM".into()])
        }
    );
    // A community named under the wrong street is not guessed either.
    assert!(!text("公明街道楼村社区").is_resolved());
}

#[test]
fn unknown_text_is_unresolved() {
    assert_eq!(
        text("福田区华强北赛格广场"),
        Resolution::Unresolved {
            reason: UnresolvedReason::NoMatch
        }
    );
    // The district's own name is not a street.
    assert!(!text("光明区").is_resolved());
    assert!(!text("").is_resolved());
}

#[test]
fn polygons_resolve_points_to_communities() {
    let g = Gazetteer::guangming();
    let units = UnitDirectory::guangming();
    // Every demo area's centre resolves to that area's community.
    for a in g.areas() {
        let n = a.polygon.len() as f64;
        let lat = a.polygon.iter().map(|p| p.0).sum::<f64>() / n;
        let lon = a.polygon.iter().map(|p| p.1).sum::<f64>() / n;
        assert_eq!(
            g.resolve_point(lat, lon),
            resolved(&a.street, Some(&a.community), Via::Coordinates)
        );
        assert!(units.contains(&a.community));
        assert_eq!(
            units.street_of(&a.community).map(|u| u.code.as_str()),
            Some(a.street.as_str())
        );
    }
    assert_eq!(g.resolve_point(22.80, 113.86).street(), Some("ST-GOM"));
    assert_eq!(g.resolve_point(22.72, 113.97).street(), Some("ST-FH"));
    // A point on a shared edge belongs to exactly one community.
    assert!(g.resolve_point(22.76, 113.95).is_resolved());
}

#[test]
fn points_outside_or_invalid_are_unresolved() {
    let g = Gazetteer::guangming();
    assert_eq!(
        g.resolve_point(22.54, 114.06),
        Resolution::Unresolved {
            reason: UnresolvedReason::Outside
        }
    );
    assert_eq!(
        g.resolve_point(f64::NAN, 113.9),
        Resolution::Unresolved {
            reason: UnresolvedReason::InvalidCoordinates
        }
    );
    assert!(!g.resolve_point(95.0, 113.9).is_resolved());
}

#[test]
fn overlapping_polygons_of_two_streets_are_ambiguous() {
    let square = |lat0: f64, lon0: f64| {
        vec![
            (lat0, lon0),
            (lat0, lon0 + 1.0),
            (lat0 + 1.0, lon0 + 1.0),
            (lat0 + 1.0, lon0),
        ]
    };
    let g = Gazetteer::new(
        vec![Place {
            name: "甲".into(),
            street: "ST-A".into(),
            community: None,
        }],
        vec![
            Area {
                street: "ST-A".into(),
                community: "CM-A".into(),
                polygon: square(0.0, 0.0),
            },
            Area {
                street: "ST-B".into(),
                community: "CM-B".into(),
                polygon: square(0.5, 0.5),
            },
        ],
    );
    assert_eq!(g.resolve_point(0.2, 0.2).community(), Some("CM-A"));
    assert!(!g.resolve_point(0.7, 0.7).is_resolved());
}

#[test]
fn combined_resolution_prefers_text_then_coordinates() {
    let g = Gazetteer::guangming();
    assert_eq!(
        g.resolve(Some("公明广场"), Some((22.72, 113.97))).street(),
        Some("ST-GOM")
    );
    let r = g.resolve(Some("我家门口"), Some((22.72, 113.97)));
    assert_eq!(r.street(), Some("ST-FH"));
    assert!(matches!(
        r,
        Resolution::Resolved {
            via: Via::Coordinates,
            ..
        }
    ));
    assert!(!g.resolve(Some("我家门口"), Some((0.0, 0.0))).is_resolved());
    assert!(!g.resolve(None, None).is_resolved());
}

#[test]
fn every_place_names_known_units() {
    let g = Gazetteer::guangming();
    let units = UnitDirectory::guangming();
    for p in g.places() {
        assert!(units.contains(&p.street), "{}", p.name);
        if let Some(c) = &p.community {
            assert_eq!(
                units.street_of(c).map(|u| u.code.as_str()),
                Some(p.street.as_str()),
                "{}",
                p.name
            );
        }
    }
}
