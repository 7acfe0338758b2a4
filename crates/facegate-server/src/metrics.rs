//! Prometheus metrics, served at `/metrics` in the OpenMetrics text format.

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub method: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub faces_embedded: Counter,
    pub inference_in_flight: Gauge<i64, AtomicI64>,
    pub inference_rejected: Counter,
    pub gallery_people: Gauge<i64, AtomicI64>,
    pub gallery_templates: Gauge<i64, AtomicI64>,
}

fn latency_histogram() -> Histogram {
    // 5 ms .. ~20 s
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("facegate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        let latency: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response, by route",
            latency.clone(),
        );
        let faces_embedded = Counter::default();
        registry.register(
            "faces_embedded",
            "Faces turned into embeddings",
            faces_embedded.clone(),
        );
        let inference_in_flight = Gauge::default();
        registry.register(
            "inference_in_flight",
            "Inferences running now",
            inference_in_flight.clone(),
        );
        let inference_rejected = Counter::default();
        registry.register(
            "inference_rejected",
            "Requests refused with 503 because every inference slot was busy",
            inference_rejected.clone(),
        );
        let gallery_people = Gauge::default();
        registry.register(
            "gallery_people",
            "People in the gallery",
            gallery_people.clone(),
        );
        let gallery_templates = Gauge::default();
        registry.register(
            "gallery_templates",
            "Face templates in the gallery",
            gallery_templates.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            faces_embedded,
            inference_in_flight,
            inference_rejected,
            gallery_people,
            gallery_templates,
        }
    }
}

impl Metrics {
    pub fn record(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_string(),
                method: method.to_string(),
                status: status.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_string(),
                method: method.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
