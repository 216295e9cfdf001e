//! Order/Product/Payment demo services.
