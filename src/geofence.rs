//! Geofences: pure geometry. Validation of a fence's shape, "is this point inside", and an
//! R-tree index of an org's fences. No I/O, no clocks, no channels: `field` decides what a
//! crossing means and `alerts` what to do about it.
//!
//! Coordinates are GeoJSON-style `[lon, lat]` in degrees; circle radii are metres.

use std::sync::Arc;

use geo::{Contains, Coord, Distance, Haversine, LineString, Point, Polygon, Validation};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{RTree, AABB};
use serde::{Deserialize, Serialize};

/// Why a fence was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GeofenceError {
    /// A coordinate is not a finite `[lon, lat]` in range.
    #[error("coordinate {0:?} is not a [lon, lat] within range")]
    BadCoordinate([f64; 2]),
    /// A ring does not end where it starts, or has fewer than 4 positions.
    #[error("polygon ring {0} must be closed and have at least 4 positions")]
    OpenRing(usize),
    /// Too many vertices.
    #[error("polygon has {0} vertices, more than the {1} allowed")]
    TooManyVertices(usize, usize),
    /// The polygon crosses itself (or is otherwise invalid).
    #[error("polygon is not simple: {0}")]
    Invalid(String),
    /// A circle's radius is not a positive finite number of metres.
    #[error("circle radius must be a positive number of metres")]
    BadRadius,
    /// No ring at all.
    #[error("polygon needs at least one ring")]
    NoRing,
}

/// Whether guards must stay inside or must not enter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FenceKind {
    /// Guards must stay inside while on shift.
    Required,
    /// Guards must not enter.
    Forbidden,
}

/// A fence's shape, as clients send it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Shape {
    /// GeoJSON polygon: an outer ring then holes, each closed.
    Polygon {
        /// Rings of `[lon, lat]`.
        coordinates: Vec<Vec<[f64; 2]>>,
    },
    /// A circle around `center`.
    Circle {
        /// `[lon, lat]`.
        center: [f64; 2],
        /// Metres.
        radius: f64,
    },
}

fn valid_coord(c: [f64; 2]) -> bool {
    c[0].is_finite()
        && c[1].is_finite()
        && (-180.0..=180.0).contains(&c[0])
        && (-90.0..=90.0).contains(&c[1])
}

/// A validated, ready-to-test shape.
#[derive(Debug, Clone)]
pub struct Area {
    geometry: Geometry,
    bbox: AABB<[f64; 2]>,
}

#[derive(Debug, Clone)]
enum Geometry {
    Polygon(Polygon<f64>),
    Circle(Point<f64>, f64),
}

impl Shape {
    /// Checks the shape and prepares it for point tests.
    pub fn compile(&self, max_vertices: usize) -> Result<Area, GeofenceError> {
        match self {
            Shape::Polygon { coordinates } => {
                let vertices: usize = coordinates.iter().map(|r| r.len().saturating_sub(1)).sum();
                if vertices > max_vertices {
                    return Err(GeofenceError::TooManyVertices(vertices, max_vertices));
                }
                let mut rings = Vec::with_capacity(coordinates.len());
                for (i, ring) in coordinates.iter().enumerate() {
                    if let Some(bad) = ring.iter().find(|c| !valid_coord(**c)) {
                        return Err(GeofenceError::BadCoordinate(*bad));
                    }
                    if ring.len() < 4 || ring.first() != ring.last() {
                        return Err(GeofenceError::OpenRing(i));
                    }
                    rings.push(LineString::from(
                        ring.iter()
                            .map(|c| Coord { x: c[0], y: c[1] })
                            .collect::<Vec<_>>(),
                    ));
                }
                let mut rings = rings.into_iter();
                let outer = rings.next().ok_or(GeofenceError::NoRing)?;
                let polygon = Polygon::new(outer, rings.collect());
                if let Err(e) = polygon.check_validation() {
                    return Err(GeofenceError::Invalid(e.to_string()));
                }
                let (mut min, mut max) = ([f64::MAX; 2], [f64::MIN; 2]);
                for c in polygon.exterior().coords() {
                    min = [min[0].min(c.x), min[1].min(c.y)];
                    max = [max[0].max(c.x), max[1].max(c.y)];
                }
                Ok(Area {
                    geometry: Geometry::Polygon(polygon),
                    bbox: AABB::from_corners(min, max),
                })
            }
            Shape::Circle { center, radius } => {
                if !valid_coord(*center) {
                    return Err(GeofenceError::BadCoordinate(*center));
                }
                if !radius.is_finite() || *radius <= 0.0 || *radius > 1_000_000.0 {
                    return Err(GeofenceError::BadRadius);
                }
                // Degrees spanned by the radius; generous near the poles, which only widens the
                // prefilter, never the test.
                let dlat = radius / 111_000.0;
                let dlon = dlat / center[1].to_radians().cos().abs().max(0.01);
                Ok(Area {
                    geometry: Geometry::Circle(Point::new(center[0], center[1]), *radius),
                    bbox: AABB::from_corners(
                        [center[0] - dlon, center[1] - dlat],
                        [center[0] + dlon, center[1] + dlat],
                    ),
                })
            }
        }
    }
}

impl Area {
    /// Whether `[lon, lat]` lies inside (on the boundary counts as outside for polygons).
    pub fn contains(&self, lon: f64, lat: f64) -> bool {
        let p = Point::new(lon, lat);
        match &self.geometry {
            Geometry::Polygon(poly) => poly.contains(&p),
            Geometry::Circle(center, radius) => Haversine.distance(*center, p) <= *radius,
        }
    }
}

/// Great-circle distance in metres between two `[lon, lat]` points.
pub fn distance_m(a: [f64; 2], b: [f64; 2]) -> f64 {
    Haversine.distance(Point::new(a[0], a[1]), Point::new(b[0], b[1]))
}

/// An org's fences, indexed by bounding box.
pub struct FenceIndex<T> {
    items: Vec<(Arc<T>, Area)>,
    tree: RTree<GeomWithData<Rectangle<[f64; 2]>, usize>>,
}

impl<T> FenceIndex<T> {
    /// Indexes `items` with their areas.
    pub fn new(items: Vec<(Arc<T>, Area)>) -> Self {
        let tree = RTree::bulk_load(
            items
                .iter()
                .enumerate()
                .map(|(i, (_, area))| {
                    GeomWithData::new(
                        Rectangle::from_corners(area.bbox.lower(), area.bbox.upper()),
                        i,
                    )
                })
                .collect(),
        );
        FenceIndex { items, tree }
    }

    /// Every item, with whether `[lon, lat]` is inside it.
    pub fn classify(&self, lon: f64, lat: f64) -> Vec<(&Arc<T>, bool)> {
        let mut inside = vec![false; self.items.len()];
        for hit in self.tree.locate_all_at_point(&[lon, lat]) {
            let (_, area) = &self.items[hit.data];
            inside[hit.data] = area.contains(lon, lat);
        }
        self.items
            .iter()
            .zip(inside)
            .map(|((item, _), inside)| (item, inside))
            .collect()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_are_great_circle_metres() {
        // 0.001° of latitude is about 111 m, wherever the point is.
        let d = distance_m([-0.12, 51.5], [-0.12, 51.501]);
        assert!((d - 111.2).abs() < 0.5, "{d}");
    }

    fn square(x0: f64, y0: f64, size: f64) -> Shape {
        Shape::Polygon {
            coordinates: vec![vec![
                [x0, y0],
                [x0 + size, y0],
                [x0 + size, y0 + size],
                [x0, y0 + size],
                [x0, y0],
            ]],
        }
    }

    #[test]
    fn a_point_is_inside_a_square_and_outside_beyond_it() {
        let area = square(10.0, 50.0, 0.01).compile(100).expect("valid");
        assert!(area.contains(10.005, 50.005));
        assert!(!area.contains(10.02, 50.005));
    }

    #[test]
    fn open_crossing_oversized_and_out_of_range_polygons_are_refused() {
        let open = Shape::Polygon {
            coordinates: vec![vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]],
        };
        assert_eq!(open.compile(100).err(), Some(GeofenceError::OpenRing(0)));
        let bowtie = Shape::Polygon {
            coordinates: vec![vec![
                [0.0, 0.0],
                [1.0, 1.0],
                [1.0, 0.0],
                [0.0, 1.0],
                [0.0, 0.0],
            ]],
        };
        assert!(matches!(
            bowtie.compile(100),
            Err(GeofenceError::Invalid(_))
        ));
        assert!(matches!(
            square(0.0, 0.0, 1.0).compile(3),
            Err(GeofenceError::TooManyVertices(4, 3))
        ));
        assert!(matches!(
            square(179.5, 0.0, 1.0).compile(100),
            Err(GeofenceError::BadCoordinate(_))
        ));
    }

    #[test]
    fn a_circle_contains_points_within_its_radius() {
        let circle = Shape::Circle {
            center: [13.4, 52.5],
            radius: 100.0,
        }
        .compile(10)
        .expect("valid");
        assert!(circle.contains(13.4005, 52.5));
        assert!(!circle.contains(13.403, 52.5));
        let bad = Shape::Circle {
            center: [13.4, 52.5],
            radius: f64::NAN,
        };
        assert_eq!(bad.compile(10).err(), Some(GeofenceError::BadRadius));
    }

    #[test]
    fn the_index_classifies_every_fence() {
        let a = square(0.0, 0.0, 1.0).compile(10).expect("a");
        let b = square(5.0, 5.0, 1.0).compile(10).expect("b");
        let index = FenceIndex::new(vec![(Arc::new("a"), a), (Arc::new("b"), b)]);
        let result: Vec<(&str, bool)> = index
            .classify(0.5, 0.5)
            .into_iter()
            .map(|(n, inside)| (**n, inside))
            .collect();
        assert_eq!(result, vec![("a", true), ("b", false)]);
    }
}
