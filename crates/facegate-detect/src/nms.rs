//! Non-maximum suppression, in the two flavours MTCNN uses.

/// How box overlap is measured.
#[derive(Clone, Copy, Debug)]
pub enum Overlap {
    /// Intersection over union, areas as `(x2 - x1) * (y2 - y1)` (torchvision's `nms`).
    Union,
    /// Intersection over the smaller area, areas with the `+ 1` pixel convention (MTCNN's
    /// original "Min" mode, used after the last stage).
    Min,
}

/// Indices of the boxes kept, best score first. `boxes[i]` is `[x1, y1, x2, y2]`.
pub fn nms(boxes: &[[f32; 4]], scores: &[f32], threshold: f32, overlap: Overlap) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let pad = match overlap {
        Overlap::Union => 0.0,
        Overlap::Min => 1.0,
    };
    let area = |b: &[f32; 4]| (b[2] - b[0] + pad) * (b[3] - b[1] + pad);
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (rank, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        let a = &boxes[i];
        for &j in &order[rank + 1..] {
            if suppressed[j] {
                continue;
            }
            let b = &boxes[j];
            let w = (a[2].min(b[2]) - a[0].max(b[0]) + pad).max(0.0);
            let h = (a[3].min(b[3]) - a[1].max(b[1]) + pad).max(0.0);
            let inter = w * h;
            let value = match overlap {
                Overlap::Union => inter / (area(a) + area(b) - inter),
                Overlap::Min => inter / area(a).min(area(b)),
            };
            if value > threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_best_of_overlapping_and_all_of_separate() {
        let boxes = [
            [0.0, 0.0, 10.0, 10.0],
            [1.0, 1.0, 11.0, 11.0],
            [50.0, 50.0, 60.0, 60.0],
        ];
        let scores = [0.8, 0.9, 0.7];
        assert_eq!(nms(&boxes, &scores, 0.5, Overlap::Union), vec![1, 2]);
        // IoU of the first two is 81/119 = 0.68: above 0.7 both stay.
        assert_eq!(nms(&boxes, &scores, 0.7, Overlap::Union), vec![1, 0, 2]);
    }

    #[test]
    fn min_mode_suppresses_a_box_inside_another() {
        let boxes = [[0.0, 0.0, 100.0, 100.0], [10.0, 10.0, 30.0, 30.0]];
        assert_eq!(nms(&boxes, &[0.9, 0.95], 0.7, Overlap::Min), vec![1]);
        assert_eq!(nms(&boxes, &[0.9, 0.95], 0.7, Overlap::Union), vec![1, 0]);
    }
}
