//! Odoo's side of a buffered answer: its body read as fast as Odoo writes
//! it, into memory while the answer is small and the client's share has
//! room, then into the spool file, and the upstream lease dropped the
//! moment the body is complete. Kept apart from the client's side because
//! the two run at different paces and meet only in [`Shared`].

use std::sync::Arc;

use bytes::Bytes;
use http_body::Body as HttpBody;
use http_body_util::BodyExt;

use super::{FILE_MAX, MEMORY, PIECE_MAX, Seg, Settings, Shared};
use crate::body::BoxError;
use crate::spool::{Spool, SpoolFile};
use crate::upstream::Lease;

pub(super) async fn drain<B>(
    mut upstream: B,
    lease: Lease,
    shared: &Shared,
    spool: Arc<Spool>,
    settings: &Settings,
) where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError> + Send,
{
    let idle = settings.upstream_idle;
    let mut file: Option<SpoolFile> = None;
    let mut spool_ok = true;
    let end = 'read: loop {
        // Wait for room when neither memory nor the spool can take more.
        loop {
            let room = shared.to_writer.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            // Another stream of this client may free its share.
            let freed = shared.memory.freed();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let (gone, mem) = {
                let s = shared.lock();
                (s.gone, s.mem)
            };
            if gone {
                return left(upstream, lease, settings).await;
            }
            let spoolable = spool_ok && file.as_ref().is_none_or(|f| f.len() < FILE_MAX);
            let read_now = mem == 0 && shared.lock().reader_waiting;
            if (mem < MEMORY && shared.memory.has_room(settings.client)) || spoolable || read_now {
                break;
            }
            tokio::select! {
                _ = room => {}
                _ = freed => {}
            }
        }
        let gone = shared.to_writer.notified();
        let frame = tokio::select! {
            f = tokio::time::timeout(idle, upstream.frame()) => f,
            _ = gone => continue,
        };
        let data = match frame {
            Err(_) => break Err(format!("no data from Odoo for {idle:?}")),
            Ok(None) => break Ok(()),
            Ok(Some(Err(e))) => {
                let e: BoxError = e.into();
                break Err(e.to_string());
            }
            Ok(Some(Ok(f))) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
        };
        if data.is_empty() {
            continue;
        }
        let mut data = data;
        let gone = 'push: {
            let mut s = shared.lock();
            if s.gone {
                break 'push true;
            }
            let n = data.len();
            // Memory while this answer is small and the client's share has
            // room; the spool next; memory again (past the share by this
            // one piece) only when the spool cannot take it, and then the
            // room loop above waits before reading more. A client waiting
            // with nothing in memory gets one piece past its share (a
            // stream being read always moves), and only one: the rest of
            // Odoo's read goes to the spool (a read can be hundreds of KB,
            // and every stream of a client granting one byte of window
            // waits so).
            let take = if s.mem + n <= MEMORY && shared.memory.try_take(settings.client, n) {
                n
            } else if !spool_ok {
                shared.memory.force_take(settings.client, n);
                n
            } else if s.mem == 0 && s.reader_waiting {
                let piece = n.min(PIECE_MAX);
                shared.memory.force_take(settings.client, piece);
                piece
            } else {
                0
            };
            if take > 0 {
                s.mem += take;
                // A copy: the piece may share a much larger read buffer,
                // which `mem` would not count.
                s.segs
                    .push_back(Seg::Mem(Bytes::copy_from_slice(&data[..take])));
                drop(s);
                shared.to_reader.notify_one();
                if take == n {
                    continue 'read;
                }
                data = data.slice(take..);
            }
            false
        };
        if gone {
            return left(upstream, lease, settings).await;
        }
        let n = data.len();
        if file.is_none() {
            match spool.create(settings.client).await {
                Ok(f) => file = Some(f),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot spool Odoo's answer: the client is served at its own pace");
                    spool_ok = false;
                }
            }
        }
        let appended = match &mut file {
            Some(f) => {
                let from = f.len();
                match f.append(data.clone()).await {
                    Ok(()) => Some((from, f.len(), f.reader())),
                    Err(e) => {
                        tracing::debug!(error = %e, "spool full: the client is served at its own pace");
                        spool_ok = false;
                        None
                    }
                }
            }
            None => None,
        };
        let gone = 'push: {
            let mut s = shared.lock();
            if s.gone {
                break 'push true;
            }
            match appended {
                Some((from, to, reader)) => {
                    s.reader.get_or_insert(reader);
                    match s.segs.back_mut() {
                        Some(Seg::File { to: end, .. }) if *end == from => *end = to,
                        _ => s.segs.push_back(Seg::File { from, to }),
                    }
                }
                None => {
                    shared.memory.force_take(settings.client, n);
                    s.mem += n;
                    s.segs.push_back(Seg::Mem(data));
                }
            }
            false
        };
        if gone {
            return left(upstream, lease, settings).await;
        }
        shared.to_reader.notify_one();
    };
    // Odoo is done with this request: its worker and our slot are free.
    drop(lease);
    drop(upstream);
    shared.lock().end = Some(end);
    shared.to_reader.notify_one();
    // The spool file stays open (unlinked) while the client reads it.
    if let Some(f) = file {
        loop {
            let wake = shared.to_writer.notified();
            tokio::pin!(wake);
            wake.as_mut().enable();
            {
                let s = shared.lock();
                if s.gone || (s.segs.is_empty() && s.end.is_some()) {
                    break;
                }
            }
            wake.await;
        }
        drop(f);
    }
}

/// The client left before Odoo's answer was over: the answer is read away
/// when the guard waits for its verdict, then the slot freed.
async fn left<B>(mut upstream: B, lease: Lease, settings: &Settings)
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    if settings.read_away {
        while let Ok(Some(Ok(_))) =
            tokio::time::timeout(settings.upstream_idle, upstream.frame()).await
        {}
    }
    drop(upstream);
    drop(lease);
}
