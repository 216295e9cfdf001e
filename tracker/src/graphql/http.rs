//! The HTTP handler: the bearer token first (no token, no data, no introspection), then the request (JSON body,
//! or query parameters on `GET`), then the schema with this request's state and timeline loader.

use async_graphql::dataloader::DataLoader;
use async_graphql_axum::GraphQLResponse;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::loaders::TimelineLoader;
use super::schema::schema;
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::model::ErrorCode;

/// `GET` or `POST /api/graphql`.
pub async fn serve(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = state.authorize(&headers) {
        return refused(
            StatusCode::UNAUTHORIZED,
            e.to_string(),
            ErrorCode::Unauthorized,
        );
    }
    let request = if method == Method::GET {
        async_graphql::http::parse_query_string(uri.query().unwrap_or_default())
            .map_err(|e| e.to_string())
    } else {
        serde_json::from_slice::<async_graphql::Request>(&body).map_err(|e| e.to_string())
    };
    let request = match request {
        Ok(request) => request,
        Err(e) => {
            let e = ApiError::BadRequest(format!("not a GraphQL request: {e}"));
            return refused(
                StatusCode::BAD_REQUEST,
                e.to_string(),
                ErrorCode::BadRequest,
            );
        }
    };
    let loader = DataLoader::new(
        TimelineLoader {
            store: state.store.clone(),
        },
        tokio::spawn,
    );
    let request = request.data(state).data(loader);
    GraphQLResponse::from(schema().execute(request).await).into_response()
}

/// A request refused before execution: the status, and a GraphQL response with one error and no data.
fn refused(status: StatusCode, message: String, code: ErrorCode) -> Response {
    let error = super::errors::coded(message, code).into_server_error(Default::default());
    let body = GraphQLResponse::from(async_graphql::Response::from_errors(vec![error]));
    let mut response = (status, body).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    response
}
