//! Which faces in consecutive frames belong to the same person: greedy matching of boxes by
//! overlap (IoU). Cheap and adequate at a few frames per second when people do not cross.

use facegate_face::Face;

/// A face followed across frames.
#[derive(Clone, Debug)]
pub struct Track {
    pub id: u64,
    pub bbox: [f32; 4],
    pub first_frame: u64,
    pub last_frame: u64,
    /// Frames in which the face was seen.
    pub hits: u64,
}

#[derive(Debug)]
pub struct Tracker {
    tracks: Vec<Track>,
    next_id: u64,
    /// Overlap needed to continue a track.
    min_iou: f32,
    /// Frames a track survives unseen (a missed detection, a blink of occlusion).
    max_missed: u64,
}

/// What one frame did to the tracks.
#[derive(Debug, Default)]
pub struct Update {
    /// For each face of the frame (same order), its track id.
    pub assigned: Vec<u64>,
    /// Tracks that ended (unseen for too long), oldest first.
    pub ended: Vec<Track>,
}

impl Tracker {
    pub fn new(min_iou: f32, max_missed: u64) -> Tracker {
        Tracker {
            tracks: Vec::new(),
            next_id: 1,
            min_iou,
            max_missed,
        }
    }

    pub fn update(&mut self, frame: u64, faces: &[Face]) -> Update {
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (f, face) in faces.iter().enumerate() {
            for (t, track) in self.tracks.iter().enumerate() {
                let overlap = iou(face.bbox, track.bbox);
                if overlap >= self.min_iou {
                    pairs.push((overlap, f, t));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut assigned: Vec<Option<u64>> = vec![None; faces.len()];
        let mut taken = vec![false; self.tracks.len()];
        for (_, f, t) in pairs {
            if assigned[f].is_none() && !taken[t] {
                taken[t] = true;
                let track = &mut self.tracks[t];
                track.bbox = faces[f].bbox;
                track.last_frame = frame;
                track.hits += 1;
                assigned[f] = Some(track.id);
            }
        }
        let assigned = assigned
            .into_iter()
            .enumerate()
            .map(|(f, id)| {
                id.unwrap_or_else(|| {
                    let id = self.next_id;
                    self.next_id += 1;
                    self.tracks.push(Track {
                        id,
                        bbox: faces[f].bbox,
                        first_frame: frame,
                        last_frame: frame,
                        hits: 1,
                    });
                    id
                })
            })
            .collect();
        let max_missed = self.max_missed;
        let (ended, alive): (Vec<Track>, Vec<Track>) = self
            .tracks
            .drain(..)
            .partition(|t| frame.saturating_sub(t.last_frame) > max_missed);
        self.tracks = alive;
        Update { assigned, ended }
    }

    /// Ends every track (the video is over).
    pub fn finish(&mut self) -> Vec<Track> {
        std::mem::take(&mut self.tracks)
    }
}

/// Intersection over union of two boxes.
pub use facegate_face::box_iou as iou;

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x: f32) -> Face {
        Face {
            bbox: [x, 10.0, x + 50.0, 60.0],
            score: 1.0,
            landmarks: [[0.0; 2]; 5],
        }
    }

    #[test]
    fn moving_faces_keep_their_tracks_and_lost_ones_end() {
        let mut tracker = Tracker::new(0.3, 1);
        let a = tracker.update(0, &[face(0.0), face(200.0)]).assigned;
        assert_eq!(a, [1, 2]);
        // Both move a little; listed in the other order.
        let b = tracker.update(1, &[face(205.0), face(5.0)]).assigned;
        assert_eq!(b, [2, 1]);
        // Track 2 disappears; after more than one missed frame it ends.
        assert!(tracker.update(2, &[face(8.0)]).ended.is_empty());
        let ended = tracker.update(3, &[face(10.0)]).ended;
        assert_eq!(ended.iter().map(|t| t.id).collect::<Vec<_>>(), [2]);
        // A face far away is someone new.
        assert_eq!(tracker.update(4, &[face(400.0)]).assigned, [3]);
        assert_eq!(tracker.finish().len(), 2);
    }
}
