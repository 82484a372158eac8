//! Hosted update payloads served at `/packages/` (range requests for update_engine resumes,
//! HEAD, exact Content-Length, optional Basic auth from `--packages-auth`), plus the REST
//! routes that belong to syncing: channel floors and `POST /api/apps/:app/packages?host=true`
//! (in `payloads/api.rs`).

mod api;

use std::io::SeekFrom;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncSeekExt, ReadBuf};
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, Method, StatusCode};
use warp::reply::{Reply, Response};
use warp::Filter;

use super::{ApiError, AppState};

pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let hosting = state.hosting.clone();
    let serve = warp::path!("packages" / String)
        .and(warp::get().or(warp::head()).unify())
        .and(warp::method())
        .and(warp::header::optional::<String>("range"))
        .and(warp::header::optional::<String>("authorization"))
        .then(
            move |name: String,
                  method: Method,
                  range: Option<String>,
                  authorization: Option<String>| {
                let hosting = hosting.clone();
                async move {
                    match serve(&hosting, &name, &method, range.as_deref(), authorization).await {
                        Ok(r) => r,
                        Err(e) => e.into_response(),
                    }
                }
            },
        );
    serve.or(api::routes(state)).unify().boxed()
}

/// What a `Range` header asks for, given the file length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No (usable) range: the whole file, 200.
    Full,
    /// Inclusive byte range, 206.
    Partial { start: u64, end: u64 },
    /// 416.
    Unsatisfiable,
}

/// Parses one `bytes=` range. Malformed headers, other units and multi-range requests are
/// ignored (the whole file is a valid answer to them); only well-formed ranges outside the
/// file are unsatisfiable.
pub fn parse_range(header: Option<&str>, len: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let parse = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (parse(first), parse(last)) {
        (Some(start), end) => {
            if !last.is_empty() && end.is_none() {
                return RangeRequest::Full;
            }
            if start >= len {
                return RangeRequest::Unsatisfiable;
            }
            match end {
                Some(end) if end < start => RangeRequest::Full,
                Some(end) => RangeRequest::Partial {
                    start,
                    end: end.min(len - 1),
                },
                None => RangeRequest::Partial {
                    start,
                    end: len - 1,
                },
            }
        }
        (None, Some(suffix)) if first.is_empty() => {
            if suffix == 0 || len == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial {
                    start: len.saturating_sub(suffix),
                    end: len - 1,
                }
            }
        }
        _ => RangeRequest::Full,
    }
}

fn check_auth(
    hosting: &crate::sync::hosting::Hosting,
    authorization: Option<String>,
) -> Result<(), ApiError> {
    use base64::Engine as _;
    use subtle::ConstantTimeEq as _;
    let Some((user, password)) = hosting.auth() else {
        return Ok(());
    };
    let given = authorization
        .as_deref()
        .map(str::trim)
        .and_then(|h| {
            h.strip_prefix("Basic ")
                .or_else(|| h.strip_prefix("basic "))
        })
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .unwrap_or_default();
    let expected = format!("{user}:{password}");
    if bool::from(given.as_slice().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

async fn serve(
    hosting: &crate::sync::hosting::Hosting,
    name: &str,
    method: &Method,
    range: Option<&str>,
    authorization: Option<String>,
) -> Result<Response, ApiError> {
    check_auth(hosting, authorization)?;
    let path: PathBuf = hosting.file_path(name).ok_or(ApiError::NotFound)?;
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiError::NotFound)?;
    let meta = file
        .metadata()
        .await
        .map_err(|e| ApiError::Internal(format!("reading {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(ApiError::NotFound);
    }
    let len = meta.len();
    let (status, start, count) = match parse_range(range, len) {
        RangeRequest::Full => (StatusCode::OK, 0, len),
        RangeRequest::Partial { start, end } => {
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeRequest::Unsatisfiable => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            let headers = response.headers_mut();
            headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                headers.insert(header::CONTENT_RANGE, v);
            }
            return Ok(response);
        }
    };
    let mut response = if method == Method::HEAD {
        Response::new(Default::default())
    } else {
        if start > 0 {
            file.seek(SeekFrom::Start(start))
                .await
                .map_err(|e| ApiError::Internal(format!("seeking {}: {e}", path.display())))?;
        }
        warp::reply::stream(FileChunks {
            file,
            remaining: count,
        })
        .into_response()
    };
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", start + count - 1))
        {
            headers.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

/// Streams `remaining` bytes of a file in 64 KiB chunks.
struct FileChunks {
    file: tokio::fs::File,
    remaining: u64,
}

const CHUNK: usize = 64 * 1024;

impl futures_util::Stream for FileChunks {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(self.remaining).unwrap_or(CHUNK).min(CHUNK);
        let mut storage = vec![0u8; want];
        let mut buf = ReadBuf::new(&mut storage);
        match Pin::new(&mut self.file).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len();
                if n == 0 {
                    // The file shrank under us: end the body short rather than loop forever.
                    self.remaining = 0;
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "hosted file shrank while being served",
                    ))));
                }
                self.remaining -= n as u64;
                storage.truncate(n);
                Poll::Ready(Some(Ok(Bytes::from(storage))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_range, RangeRequest::*};

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range(None, 10), Full);
        assert_eq!(
            parse_range(Some("bytes=0-4"), 10),
            Partial { start: 0, end: 4 }
        );
        assert_eq!(
            parse_range(Some("bytes=5-"), 10),
            Partial { start: 5, end: 9 }
        );
        assert_eq!(
            parse_range(Some("bytes=-3"), 10),
            Partial { start: 7, end: 9 }
        );
        assert_eq!(
            parse_range(Some("bytes=-30"), 10),
            Partial { start: 0, end: 9 }
        );
        assert_eq!(
            parse_range(Some("bytes=8-100"), 10),
            Partial { start: 8, end: 9 }
        );
        assert_eq!(parse_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-0"), 0), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-2"), 10), Full);
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), Full);
        assert_eq!(parse_range(Some("items=0-1"), 10), Full);
        assert_eq!(parse_range(Some("bytes=a-b"), 10), Full);
        assert_eq!(parse_range(Some("bytes=1-x"), 10), Full);
    }
}
