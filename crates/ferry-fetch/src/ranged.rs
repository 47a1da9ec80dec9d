//! Ranged files (BITS `AddFileWithRanges`): several ranges of one remote file, concatenated in
//! the order given into the staging file.
//!
//! The committed offset is an offset in that concatenation; `ferry_core::range` maps it to the
//! range and remote offset to continue from. Each remaining range is one request,
//! `Range: bytes=a-b` (`a-` for an open-ended range), with `If-Range` once a validator is known.
//! Only a 206 whose `Content-Range` starts at exactly `a` (and ends at `b` when bounded) is
//! appended; anything else fails without splicing a byte:
//!
//! - a 200 without `If-Range`: the server cannot serve ranges (`RANGE_UNSUPPORTED`);
//! - a 200 with `If-Range`, or a new size under a matching validator: the remote file changed,
//!   so the whole ranged file starts over from output offset 0;
//! - a range reaching past the end of the remote file (416, a 206 cut at the end, or a size
//!   that does not hold every range): `INVALID_RANGE`;
//! - any other mismatch: `INVALID_SERVER_RESPONSE`.
//!
//! `file://` sources read the ranges from the local file. Not here: on-demand ranges
//! (`RequestFileRanges`) and `callback.file_ranges_transferred`.

use ferry_core::range::{self, Location, RangeAsk, RangedDecision};
use ferry_proto::FileRange;
use reqwest::Url;
use reqwest::header;

use crate::error::FetchError;
use crate::http::{
    Ask, MAX_RESTARTS, content_length, custom_headers, header_str, redact, response_validator,
    status_error,
};
use crate::local::{FileSource, open_source};
use crate::{FetchDone, Run, Source};

/// The ranges as far as their lengths are known during one attempt.
struct Layout<'r> {
    /// The ranges as requested.
    given: &'r [FileRange],
    /// The same ranges, the open-ended length filled in once it is known.
    resolved: Vec<FileRange>,
    /// The remote size the answers of this attempt declared.
    remote_total: Option<u64>,
}

impl<'r> Layout<'r> {
    fn new(given: &'r [FileRange]) -> Layout<'r> {
        Layout {
            given,
            resolved: given.to_vec(),
            remote_total: None,
        }
    }

    /// Forgets everything learned from answers (the remote file changed).
    fn reset(&mut self) {
        self.resolved = self.given.to_vec();
        self.remote_total = None;
    }

    /// The size of the concatenation, once every length is known.
    fn output_total(&self) -> Option<u64> {
        range::output_len(&self.resolved)
    }
}

/// `bytes a-b` or `bytes a-` for messages.
fn describe(from: u64, to: Option<u64>) -> String {
    match to {
        Some(to) => format!("bytes {from}-{to}"),
        None => format!("bytes {from}-"),
    }
}

impl Run<'_> {
    /// Drops every byte and every assumption about the remote file, and reports the restart.
    async fn start_over(&mut self, layout: &mut Layout<'_>) -> Result<(), FetchError> {
        layout.reset();
        self.validator = None;
        self.total = layout.output_total();
        self.restart().await
    }

    /// Fetches the ranges of an http(s) URL into the sink, resuming at the committed offset.
    pub(crate) async fn fetch_http_ranged(
        &mut self,
        url: Url,
        ranges: &[FileRange],
    ) -> Result<FetchDone, FetchError> {
        let headers = custom_headers(&self.req.headers)?;
        let mut layout = Layout::new(ranges);
        // Bytes from an earlier attempt: the recorded output total tells the open-ended
        // range's length, so offsets past it can be mapped (checked against the server's size
        // once an answer declares it).
        if self.sink.position() > 0
            && let Some(resolved) = self
                .req
                .expected_total
                .and_then(|t| range::resolve_output(ranges, t))
        {
            layout.resolved = resolved;
        }
        self.total = layout.output_total();
        // Bytes from an earlier attempt are only trusted under a validator the server checks
        // (If-Range); bytes fetched in this attempt are.
        let mut confirmed = self.sink.position() == 0;
        let mut restarts = 0u32;
        loop {
            let pos = self.sink.position();
            let validator = self.validator.clone().filter(|v| v.usable_for_if_range());
            if pos > 0 && !confirmed && validator.is_none() {
                self.start_over(&mut layout).await?;
                confirmed = true;
                continue;
            }
            let at = match range::locate(&layout.resolved, pos) {
                Location::End => return self.finish().await,
                Location::In(at) => at,
                Location::Past => {
                    // More bytes on disk than the ranges hold: they cannot be these ranges.
                    self.start_over(&mut layout).await?;
                    confirmed = true;
                    continue;
                }
            };
            let Some(current) = layout.given.get(at.index).copied() else {
                return Err(FetchError::invalid_request(format!(
                    "range {} does not exist",
                    at.index
                )));
            };
            // An open-ended range is asked for as `a-` even once its length is known: the
            // server then ends the body at its own end. Lengths are at least 1 (checked
            // before the fetch), so `to >= from`.
            let to = current
                .length
                .map(|l| current.offset.saturating_add(l).saturating_sub(1));
            let ask = RangeAsk {
                from: at.remote,
                to_inclusive: to,
                if_range: validator.is_some(),
            };
            let (resp, final_url) = self
                .send(
                    &url,
                    &headers,
                    &Ask {
                        range: Some((at.remote, to)),
                        validator: validator.as_ref(),
                    },
                )
                .await?;
            let status = resp.status().as_u16();
            let shown = redact(&final_url);

            if status == 416 {
                let size = header_str(resp.headers(), &header::CONTENT_RANGE)
                    .and_then(range::parse_unsatisfied_range);
                if to.is_none()
                    && at.within > 0
                    && size == Some(at.remote)
                    && layout.remote_total.is_none_or(|t| t == at.remote)
                {
                    // Resuming an open-ended range whose bytes had all arrived (a stop after
                    // the last write, before the final checkpoint): its length is now known.
                    layout.resolved[at.index].length = Some(at.within);
                    layout.remote_total = size;
                    self.total = layout.output_total();
                    confirmed = true;
                    continue;
                }
                return Err(FetchError::invalid_range(format!(
                    "range {} ({}) of {shown} starts beyond the end of the remote file{}",
                    at.index,
                    describe(at.remote, to),
                    size.map(|s| format!(" ({s} bytes)")).unwrap_or_default()
                )));
            }
            if status != 200 && status != 206 {
                if (200..300).contains(&status) {
                    return Err(FetchError::invalid_response(format!(
                        "the server answered {status} to a request for {} of {shown}",
                        describe(at.remote, to)
                    )));
                }
                return Err(status_error(&resp, &final_url));
            }

            let resp_validator = response_validator(resp.headers());
            let declared_len = content_length(resp.headers())?;
            let content_range = match header_str(resp.headers(), &header::CONTENT_RANGE) {
                Some(v) if status == 206 => Some(
                    range::parse_content_range(v)
                        .map_err(|e| FetchError::invalid_response(format!("{e} from {shown}")))?,
                ),
                _ => None,
            };
            match range::decide_ranged(ask, status, content_range.as_ref(), layout.remote_total) {
                RangedDecision::Append => {}
                RangedDecision::Invalid(why) => {
                    return Err(FetchError::invalid_response(format!("{why} ({shown})")));
                }
                RangedDecision::Unsupported => {
                    return Err(FetchError::range_unsupported(format!(
                        "{shown} answered a request for {} with the whole file: the server \
                         cannot serve ranges",
                        describe(at.remote, to)
                    )));
                }
                RangedDecision::BeyondEnd => {
                    return Err(FetchError::invalid_range(format!(
                        "range {} ({}) of {shown} reaches beyond the end of the remote file{}",
                        at.index,
                        describe(at.remote, to),
                        content_range
                            .and_then(|c| c.total)
                            .map(|s| format!(" ({s} bytes)"))
                            .unwrap_or_default()
                    )));
                }
                RangedDecision::Restart => {
                    // The answer (a whole body, or a range of another version) is dropped
                    // unread; the ranges are asked for again, the first without If-Range.
                    restarts += 1;
                    if restarts > MAX_RESTARTS {
                        return Err(self.unstable(&final_url));
                    }
                    self.start_over(&mut layout).await?;
                    confirmed = true;
                    continue;
                }
            }
            let Some(cr) = content_range else {
                return Err(FetchError::invalid_response(format!(
                    "the server answered {status} without Content-Range ({shown})"
                )));
            };
            if declared_len.is_some_and(|n| n != cr.len()) {
                return Err(FetchError::invalid_response(format!(
                    "Content-Length {} does not match Content-Range {cr} from {shown}",
                    declared_len.unwrap_or_default()
                )));
            }
            if let Some(size) = cr.total {
                let fresh = range::resolve_remote(ranges, size)
                    .map_err(|e| FetchError::invalid_range(format!("{e} ({shown})")))?;
                let conflicts = layout
                    .resolved
                    .iter()
                    .zip(&fresh)
                    .any(|(known, now)| known.length.is_some() && known.length != now.length);
                if conflicts {
                    // The open-ended length recorded earlier no longer matches the remote
                    // size: the file changed under a validator that still matched.
                    restarts += 1;
                    if restarts > MAX_RESTARTS {
                        return Err(self.unstable(&final_url));
                    }
                    self.start_over(&mut layout).await?;
                    confirmed = true;
                    continue;
                }
                layout.resolved = fresh;
                layout.remote_total = Some(size);
            }
            self.validator = resp_validator.or(validator);
            self.total = layout.output_total();
            confirmed = true;

            let end = pos.checked_add(cr.len()).ok_or_else(|| {
                FetchError::invalid_response(format!("{cr} from {shown} is too long"))
            })?;
            let mut source = Source::Http(Box::pin(resp.bytes_stream()));
            self.pump(&mut source, Some(end)).await?;
            if layout.resolved[at.index].length.is_none() {
                // An open-ended range of a file of unknown size (`Content-Range: …/*`): the
                // body's end is the range's end.
                layout.resolved[at.index].length = Some(at.within.saturating_add(cr.len()));
                self.total = layout.output_total();
            }
        }
    }

    /// Copies the ranges of a `file://` URL into the sink, resuming at the committed offset.
    pub(crate) async fn fetch_file_ranged(
        &mut self,
        url: &Url,
        ranges: &[FileRange],
    ) -> Result<FetchDone, FetchError> {
        let opened = open_source(url, self.req.identity, self.cancel).await?;
        let (size, validator) = (opened.size, opened.validator.clone());
        let resolved = range::resolve_remote(ranges, size)
            .map_err(|e| FetchError::invalid_range(format!("{e} ({})", opened.path.display())))?;
        let total = range::output_len(&resolved);
        let pos = self.sink.position();
        let same = self.validator.as_ref() == Some(&validator) && total.is_some_and(|t| pos <= t);
        self.total = total;
        self.validator = Some(validator);
        if pos > 0 && !same {
            self.restart().await?;
        }
        loop {
            let at = match range::locate(&resolved, self.sink.position()) {
                Location::End => return self.finish().await,
                Location::In(at) => at,
                Location::Past => {
                    // Unreachable after the check above; starting over is always safe.
                    self.restart().await?;
                    continue;
                }
            };
            let Some(len) = resolved.get(at.index).and_then(|r| r.length) else {
                return Err(FetchError::invalid_request(format!(
                    "range {} has no length after resolution",
                    at.index
                )));
            };
            let left = len.saturating_sub(at.within);
            let mut source = Source::File(FileSource::new(
                &opened,
                at.remote,
                at.remote.saturating_add(left),
            ));
            let end = self.sink.position().saturating_add(left);
            self.pump(&mut source, Some(end)).await?;
        }
    }
}
