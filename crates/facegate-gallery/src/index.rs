//! 1:N search: every template of a gallery in one contiguous matrix, scanned on every core.
//!
//! Templates are unit vectors, so the closest template (Euclidean or cosine) is the one with
//! the largest dot product. [`TemplateIndex::search`] is exact. [`QuantizedIndex`] is the
//! approximate option for very large galleries: int8 copies (a quarter of the memory traffic)
//! pick candidates, which are then re-scored exactly.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use rayon::prelude::*;

use crate::{Gallery, GalleryError};

/// Rows per parallel work item: big enough to amortise scheduling, small enough to balance.
const ROWS_PER_TASK: usize = 8192;

/// One search result: a person, their closest template and its dot product with the query.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    pub person: String,
    pub template_id: i64,
    /// Dot product with the query (1 = identical direction).
    pub similarity: f32,
    /// Row in the index, to read the template back.
    pub row: usize,
}

/// All templates of one model, row-major, with their owners.
#[derive(Clone, Debug, Default)]
pub struct TemplateIndex {
    dimension: usize,
    vectors: Vec<f32>,
    template_ids: Vec<i64>,
    owners: Vec<u32>,
    people: Vec<String>,
    slots: HashMap<String, u32>,
    per_person: Vec<u32>,
    most_per_person: u32,
    /// int8 companion used to skip most rows without losing exactness (see [`Self::prepare`]).
    quantized: Option<QuantizedIndex>,
}

impl TemplateIndex {
    pub fn new(dimension: usize) -> TemplateIndex {
        TemplateIndex {
            dimension,
            ..TemplateIndex::default()
        }
    }

    /// Reads every template of `model_id` from a gallery.
    pub fn load(gallery: &dyn Gallery, model_id: &str) -> Result<TemplateIndex, GalleryError> {
        let mut index = TemplateIndex::default();
        let mut failure = None;
        gallery.scan_embeddings(model_id, &mut |id, person, embedding| {
            if failure.is_none() {
                if index.is_empty() {
                    index.dimension = embedding.len();
                }
                if let Err(err) = index.push(person, id, embedding) {
                    failure = Some(err);
                }
            }
        })?;
        match failure {
            Some(err) => Err(err),
            None => Ok(index),
        }
    }

    pub fn push(
        &mut self,
        person: &str,
        template_id: i64,
        embedding: &[f32],
    ) -> Result<(), GalleryError> {
        if embedding.len() != self.dimension {
            return Err(GalleryError::DimensionMismatch {
                dimension: embedding.len(),
                expected: self.dimension,
            });
        }
        let slot = match self.slots.get(person) {
            Some(&slot) => slot,
            None => {
                let slot = self.people.len() as u32;
                self.people.push(person.to_string());
                self.slots.insert(person.to_string(), slot);
                self.per_person.push(0);
                slot
            }
        };
        self.per_person[slot as usize] += 1;
        self.most_per_person = self.most_per_person.max(self.per_person[slot as usize]);
        self.vectors.extend_from_slice(embedding);
        self.template_ids.push(template_id);
        self.owners.push(slot);
        self.quantized = None;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.template_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.template_ids.is_empty()
    }

    pub fn dimension(&self) -> usize {
        self.dimension
    }

    pub fn people(&self) -> usize {
        self.people.len()
    }

    /// The stored template of a row.
    pub fn vector(&self, row: usize) -> &[f32] {
        &self.vectors[row * self.dimension..(row + 1) * self.dimension]
    }

    /// Bytes held by the matrix.
    pub fn matrix_bytes(&self) -> usize {
        self.vectors.len() * std::mem::size_of::<f32>()
    }

    /// Builds the int8 companion for large galleries (from `PREFILTER_MIN_ROWS` templates on):
    /// [`Self::search`] then reads a quarter of the memory per query and stays exact.
    pub fn prepare(&mut self) {
        if self.len() >= PREFILTER_MIN_ROWS && self.quantized.is_none() {
            self.quantized = Some(self.quantize());
        }
    }

    /// The `top` people closest to `query`, closest first, each with their closest template.
    /// Exact: the same answer as comparing every template in f32 ([`Self::search_full_scan`]).
    pub fn search(&self, query: &[f32], top: usize) -> Vec<Hit> {
        match &self.quantized {
            Some(quantized) => quantized.search_exact(self, query, top),
            None => self.search_full_scan(query, top),
        }
    }

    /// [`Self::search`] by comparing every template in f32.
    pub fn search_full_scan(&self, query: &[f32], top: usize) -> Vec<Hit> {
        if self.is_empty() || query.len() != self.dimension || top == 0 {
            return Vec::new();
        }
        let kernel = dot_kernel();
        let rows = self.best_rows(self.rows_needed(top), |row| kernel(query, self.vector(row)));
        self.people_from(rows, top)
    }

    /// The `top` people need at most `top * most_per_person` templates: everyone ranked above
    /// the top-th person owns at most that many better templates.
    fn rows_needed(&self, top: usize) -> usize {
        top.saturating_mul(self.most_per_person.max(1) as usize)
            .min(self.len())
    }

    /// The `count` rows with the highest `score`, best first, scanned in parallel.
    fn best_rows(&self, count: usize, score: impl Fn(usize) -> f32 + Sync) -> Vec<(f32, usize)> {
        let partial: Vec<Vec<(f32, usize)>> = (0..self.len())
            .into_par_iter()
            .with_min_len(ROWS_PER_TASK)
            .fold(
                || TopK::new(count),
                |mut top, row| {
                    top.offer(score(row), row);
                    top
                },
            )
            .map(TopK::into_sorted)
            .collect();
        let mut merged = TopK::new(count);
        for (similarity, row) in partial.into_iter().flatten() {
            merged.offer(similarity, row);
        }
        merged.into_sorted()
    }

    fn people_from(&self, rows: Vec<(f32, usize)>, top: usize) -> Vec<Hit> {
        let mut seen = vec![false; self.people.len()];
        let mut hits = Vec::with_capacity(top);
        for (similarity, row) in rows {
            let owner = self.owners[row] as usize;
            if seen[owner] {
                continue;
            }
            seen[owner] = true;
            hits.push(Hit {
                person: self.people[owner].clone(),
                template_id: self.template_ids[row],
                similarity,
                row,
            });
            if hits.len() == top {
                break;
            }
        }
        hits
    }

    /// An int8 copy, with each row's quantisation error for exact bounds.
    pub fn quantize(&self) -> QuantizedIndex {
        let dim = self.dimension.max(1);
        let codes: Vec<i8> = self
            .vectors
            .par_chunks(dim)
            .flat_map_iter(|v| v.iter().map(|&x| quantize(x)))
            .collect();
        let (residual, norm): (Vec<f32>, Vec<f32>) = self
            .vectors
            .par_chunks(dim)
            .zip(codes.par_chunks(dim))
            .map(|(v, c)| quantisation_error(v, c))
            .unzip();
        QuantizedIndex {
            codes,
            residual,
            norm,
        }
    }
}

/// Below this many templates a plain f32 scan is fast enough.
const PREFILTER_MIN_ROWS: usize = 50_000;

/// `(|v - v'|, |v'|)` for a vector and its int8 code `v' = code / 127`.
fn quantisation_error(v: &[f32], code: &[i8]) -> (f32, f32) {
    let (mut residual, mut norm) = (0.0f64, 0.0f64);
    for (&x, &c) in v.iter().zip(code) {
        let back = f64::from(c) / 127.0;
        residual += (f64::from(x) - back).powi(2);
        norm += back * back;
    }
    (residual.sqrt() as f32, norm.sqrt() as f32)
}

/// Unit-vector components lie in [-1, 1]; 127 steps each way.
fn quantize(x: f32) -> i8 {
    (x.clamp(-1.0, 1.0) * 127.0).round() as i8
}

/// int8 templates for candidate selection; results are re-scored exactly in f32.
#[derive(Clone, Debug, Default)]
pub struct QuantizedIndex {
    codes: Vec<i8>,
    /// Per row: `|v - v'|` and `|v'|`, which bound how far the int8 dot can be from the true one.
    residual: Vec<f32>,
    norm: Vec<f32>,
}

/// Slack for the rounding of the bound arithmetic itself.
const BOUND_SLACK: f32 = 1e-4;

impl QuantizedIndex {
    pub fn bytes(&self) -> usize {
        self.codes.len()
    }

    /// Exact search with an int8 prefilter. For a unit query `q` with code `q'`,
    /// `q.v = q'.v' + (q - q').v' + q.(v - v')`, so the true dot lies within
    /// `|q - q'| |v'| + |v - v'|` of the int8 one. Rows whose upper bound cannot reach the
    /// best lower bounds are skipped; the rest are re-scored in f32. Same answer as the full
    /// scan, reading a quarter of the memory.
    pub fn search_exact(&self, index: &TemplateIndex, query: &[f32], top: usize) -> Vec<Hit> {
        if index.is_empty() || query.len() != index.dimension || top == 0 {
            return Vec::new();
        }
        let dim = index.dimension;
        let needed = index.rows_needed(top);
        let q: Vec<i8> = query.iter().map(|&x| quantize(x)).collect();
        let (q_residual, _) = quantisation_error(query, &q);
        let q_norm = query.iter().map(|x| x * x).sum::<f32>().sqrt();
        let kernel = dot_i8_kernel();
        let approx: Vec<f32> = (0..index.len())
            .into_par_iter()
            .with_min_len(ROWS_PER_TASK)
            .map(|row| kernel(&q, &self.codes[row * dim..(row + 1) * dim]) as f32 / (127.0 * 127.0))
            .collect();
        let bound =
            |row: usize| q_residual * self.norm[row] + q_norm * self.residual[row] + BOUND_SLACK;
        // The needed-th best lower bound: every row of the true top `needed` reaches it.
        let mut lower = TopK::new(needed);
        for (row, &a) in approx.iter().enumerate() {
            lower.offer(a - bound(row), row);
        }
        let floor = lower
            .into_sorted()
            .last()
            .map_or(f32::NEG_INFINITY, |&(l, _)| l);
        let exact = dot_kernel();
        let mut best = TopK::new(needed);
        for (row, &a) in approx.iter().enumerate() {
            if a + bound(row) >= floor {
                best.offer(exact(query, index.vector(row)), row);
            }
        }
        index.people_from(best.into_sorted(), top)
    }

    /// Approximate search: the best `top * most_per_person * oversample` rows by int8 dot
    /// product, re-scored exactly, then grouped by person.
    pub fn search(
        &self,
        index: &TemplateIndex,
        query: &[f32],
        top: usize,
        oversample: usize,
    ) -> Vec<Hit> {
        if index.is_empty() || query.len() != index.dimension || top == 0 {
            return Vec::new();
        }
        let dim = index.dimension;
        let q: Vec<i8> = query.iter().map(|&x| quantize(x)).collect();
        let kernel = dot_i8_kernel();
        let candidates = index.best_rows(
            (index.rows_needed(top) * oversample.max(1)).min(index.len()),
            |row| kernel(&q, &self.codes[row * dim..(row + 1) * dim]) as f32,
        );
        let mut exact: Vec<(f32, usize)> = candidates
            .into_iter()
            .map(|(_, row)| (dot(query, index.vector(row)), row))
            .collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        index.people_from(exact, top)
    }
}

/// Dot product: the fastest kernel this CPU has (AVX2 + FMA where present).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_kernel()(a, b)
}

type DotKernel = fn(&[f32], &[f32]) -> f32;

/// Chosen once per call site loop: feature detection is cheap but not free per row.
fn dot_kernel() -> DotKernel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return dot_avx2_fma;
        }
    }
    dot_portable
}

#[cfg(target_arch = "x86_64")]
fn dot_avx2_fma(a: &[f32], b: &[f32]) -> f32 {
    #[target_feature(enable = "avx2,fma")]
    unsafe fn kernel(a: &[f32], b: &[f32]) -> f32 {
        dot_lanes(a, b, f32::mul_add)
    }
    // SAFETY: only handed out by `dot_kernel` after checking the CPU has AVX2 and FMA.
    unsafe { kernel(a, b) }
}

fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    // Without FMA hardware `mul_add` is a slow library call: multiply, then add.
    dot_lanes(a, b, |x, y, acc| acc + x * y)
}

/// Independent lanes, so the compiler keeps them in SIMD registers (float sums are not
/// reassociated otherwise).
#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32], fma: impl Fn(f32, f32, f32) -> f32) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] = fma(x[i], y[i], acc[i]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

type DotI8Kernel = fn(&[i8], &[i8]) -> i32;

fn dot_i8_kernel() -> DotI8Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            return dot_i8_avx2;
        }
    }
    dot_i8
}

#[cfg(target_arch = "x86_64")]
fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
    #[target_feature(enable = "avx2")]
    unsafe fn kernel(a: &[i8], b: &[i8]) -> i32 {
        dot_i8(a, b)
    }
    // SAFETY: only handed out by `dot_i8_kernel` after checking the CPU has AVX2.
    unsafe { kernel(a, b) }
}

#[inline(always)]
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    const LANES: usize = 32;
    let mut acc = [0i32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: i32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += i32::from(x[i]) * i32::from(y[i]);
        }
    }
    acc.iter().sum::<i32>() + tail
}

/// The `k` best `(score, row)` pairs seen so far (a min-heap on score).
struct TopK {
    k: usize,
    heap: BinaryHeap<Entry>,
}

#[derive(PartialEq)]
struct Entry(f32, usize);

impl Eq for Entry {}

impl Ord for Entry {
    /// Reversed so the heap's top is the worst kept entry; ties keep the lower row.
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl TopK {
    fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    #[inline]
    fn offer(&mut self, score: f32, row: usize) {
        if self.heap.len() < self.k {
            self.heap.push(Entry(score, row));
        } else if let Some(worst) = self.heap.peek() {
            if score > worst.0 || (score == worst.0 && row < worst.1) {
                self.heap.pop();
                self.heap.push(Entry(score, row));
            }
        }
    }

    /// Best first.
    fn into_sorted(self) -> Vec<(f32, usize)> {
        let mut v: Vec<(f32, usize)> = self.heap.into_iter().map(|e| (e.0, e.1)).collect();
        v.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u64, dim: usize) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(1);
        let v: Vec<f32> = (0..dim)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / norm).collect()
    }

    /// The obvious search, for comparison.
    fn brute_force(people: &[(String, i64, Vec<f32>)], query: &[f32], top: usize) -> Vec<String> {
        let mut best: HashMap<&str, f32> = HashMap::new();
        for (person, _, v) in people {
            let s: f32 = v.iter().zip(query).map(|(a, b)| a * b).sum();
            let e = best.entry(person).or_insert(f32::MIN);
            *e = e.max(s);
        }
        let mut ranked: Vec<(&str, f32)> = best.into_iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        ranked
            .into_iter()
            .take(top)
            .map(|(p, _)| p.to_string())
            .collect()
    }

    #[test]
    fn exact_search_matches_brute_force_with_several_templates_per_person() {
        let dim = 128;
        let mut rows = Vec::new();
        for i in 0..30_000u64 {
            // Uneven: person 0 has many templates, others one to three.
            let person = if i % 50 == 0 { 0 } else { i % 9_001 + 1 };
            rows.push((format!("p{person}"), i as i64, unit(i, dim)));
        }
        let mut index = TemplateIndex::new(dim);
        for (person, id, v) in &rows {
            index.push(person, *id, v).unwrap();
        }
        assert_eq!(index.len(), 30_000);
        for q in 0..20u64 {
            // Queries near a stored template, and unrelated ones.
            let mut query = unit(1_000_000 + q, dim);
            if q % 2 == 0 {
                let target = &rows[(q * 997) as usize % rows.len()].2;
                query = query.iter().zip(target).map(|(a, b)| 0.3 * a + b).collect();
                let n = query.iter().map(|x| x * x).sum::<f32>().sqrt();
                query.iter_mut().for_each(|x| *x /= n);
            }
            let hits = index.search(&query, 5);
            let names: Vec<String> = hits.iter().map(|h| h.person.clone()).collect();
            assert_eq!(names, brute_force(&rows, &query, 5), "query {q}");
            for h in &hits {
                assert!((dot(&query, index.vector(h.row)) - h.similarity).abs() < 1e-6);
                assert_eq!(rows[h.row].1, h.template_id);
            }
        }
    }

    #[test]
    fn prefiltered_search_is_exactly_the_full_scan() {
        let dim = 128;
        let mut index = TemplateIndex::new(dim);
        for i in 0..60_000u64 {
            // Some people with several templates, so the people grouping is exercised.
            index
                .push(&format!("p{}", i % 45_000), i as i64, &unit(i, dim))
                .unwrap();
        }
        let full = index.clone();
        index.prepare();
        assert!(index.quantized.is_some());
        for q in 0..40u64 {
            let mut query = unit(7_000_000 + q, dim);
            if q % 2 == 0 {
                // Near a stored template, and near-ties among many rows.
                let target = full.vector((q * 1_237) as usize % full.len()).to_vec();
                query = query
                    .iter()
                    .zip(&target)
                    .map(|(a, b)| 0.2 * a + b)
                    .collect();
                let n = query.iter().map(|x| x * x).sum::<f32>().sqrt();
                query.iter_mut().for_each(|x| *x /= n);
            }
            for top in [1, 5, 20] {
                assert_eq!(
                    index.search(&query, top),
                    full.search_full_scan(&query, top)
                );
            }
        }
    }

    #[test]
    fn quantized_search_finds_the_exact_best_match() {
        let dim = 128;
        let mut index = TemplateIndex::new(dim);
        for i in 0..20_000u64 {
            index
                .push(&format!("p{i}"), i as i64, &unit(i, dim))
                .unwrap();
        }
        let quantized = index.quantize();
        assert_eq!(quantized.bytes(), 20_000 * dim);
        let mut agree = 0;
        for q in 0..50u64 {
            let target = unit(q * 311, dim);
            let noise = unit(5_000_000 + q, dim);
            let query: Vec<f32> = target
                .iter()
                .zip(&noise)
                .map(|(a, b)| a + 0.5 * b)
                .collect();
            let n = query.iter().map(|x| x * x).sum::<f32>().sqrt();
            let query: Vec<f32> = query.into_iter().map(|x| x / n).collect();
            let exact = index.search(&query, 1);
            let approx = quantized.search(&index, &query, 1, 16);
            agree += usize::from(exact[0].person == approx[0].person);
            // Re-scored exactly: the similarity is the f32 one.
            assert!((approx[0].similarity - dot(&query, index.vector(approx[0].row))).abs() < 1e-6);
        }
        assert_eq!(agree, 50);
    }

    #[test]
    fn wrong_dimensions_are_refused_and_empty_queries_find_nothing() {
        let mut index = TemplateIndex::new(4);
        assert!(index.push("a", 1, &[1.0, 0.0, 0.0]).is_err());
        assert!(index.search(&[1.0, 0.0, 0.0, 0.0], 3).is_empty());
        index.push("a", 1, &[1.0, 0.0, 0.0, 0.0]).unwrap();
        index.push("b", 2, &[0.0, 1.0, 0.0, 0.0]).unwrap();
        let hits = index.search(&[0.6, 0.8, 0.0, 0.0], 5);
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0].person, "b");
        assert!(index.search(&[1.0, 0.0], 1).is_empty());
    }
}
