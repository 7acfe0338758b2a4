//! Image statistics the quality checks share: grey levels, their mean and spread, and the
//! usual focus measure.

use image::RgbImage;

/// The grey level (ITU-R BT.601 weights) of one RGB pixel.
pub fn grey_level([r, g, b]: [u8; 3]) -> f32 {
    0.299 * f32::from(r) + 0.587 * f32::from(g) + 0.114 * f32::from(b)
}

/// Grey levels of every pixel, row by row.
pub fn grey_levels(image: &RgbImage) -> Vec<f32> {
    image.pixels().map(|p| grey_level(p.0)).collect()
}

/// Mean and standard deviation; `(0, 0)` for no values.
pub fn mean_std(values: &[f32]) -> (f32, f32) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let n = values.len() as f32;
    let mean = values.iter().sum::<f32>() / n;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, var.sqrt())
}

/// Variance of the 4-neighbour Laplacian of a `width x height` grid of grey levels (row by
/// row): the usual focus measure. Compare grids of the same size only.
pub fn laplacian_variance(width: usize, height: usize, grey: &[f32]) -> f32 {
    if width < 3 || height < 3 || grey.len() < width * height {
        return 0.0;
    }
    let p = |x: usize, y: usize| grey[y * width + x];
    let mut responses = Vec::with_capacity((width - 2) * (height - 2));
    for y in 1..height - 1 {
        for x in 1..width - 1 {
            responses.push(p(x - 1, y) + p(x + 1, y) + p(x, y - 1) + p(x, y + 1) - 4.0 * p(x, y));
        }
    }
    let (_, std) = mean_std(&responses);
    std * std
}

/// [`laplacian_variance`] of a whole image.
pub fn image_sharpness(image: &RgbImage) -> f32 {
    laplacian_variance(
        image.width() as usize,
        image.height() as usize,
        &grey_levels(image),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_image_has_no_edges_and_a_checkerboard_many() {
        let flat = RgbImage::from_pixel(8, 8, image::Rgb([90, 90, 90]));
        assert_eq!(image_sharpness(&flat), 0.0);
        let board = RgbImage::from_fn(8, 8, |x, y| {
            let v = if (x + y) % 2 == 0 { 0 } else { 255 };
            image::Rgb([v, v, v])
        });
        assert!(image_sharpness(&board) > 1000.0);
        assert_eq!(mean_std(&[]), (0.0, 0.0));
        assert_eq!(mean_std(&[2.0, 4.0]), (3.0, 1.0));
    }
}
