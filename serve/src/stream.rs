//! `stream: true`: server-sent events in OpenAI's chunk format — on `/v1/chat/completions` the
//! role first (`chat.completion.chunk`), on `/v1/completions` text chunks (`text_completion`);
//! an SSE comment with the simulations done every half second while the search runs, then the
//! solution as content deltas (a line each), a last chunk with `finish_reason`, `usage` and the
//! `ponder` field, and `data: [DONE]`. A client that disconnects drops the stream, and with it
//! the search's slot, which cancels the search.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use ponder_engine::SearchConfig;
use serde_json::{Value, json};

use crate::App;
use crate::openai::{
    ApiError, InFlight, Profile, admit, now, prompt_tokens, report_of, solution, submit, usage,
};

/// Which endpoint's chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `chat.completion.chunk` with `delta`s.
    Chat,
    /// `text_completion` with `text`.
    Completion,
}

struct State {
    app: Arc<App>,
    shape: Shape,
    prompt_tokens: u64,
    queue: VecDeque<Event>,
    reply: Option<super::openai::ReplyHandle>,
    slot: InFlight,
    search: SearchConfig,
    profile: Profile,
    tree: bool,
    id: String,
    created: u64,
}

/// One chunk: `text` as the endpoint carries it (`None`: the role announcement of a chat).
fn chunk(st: &State, text: Option<&str>, finish: Option<&str>) -> Value {
    let (object, choice) = match st.shape {
        Shape::Chat => {
            let delta = match (text, finish) {
                (_, Some(_)) => json!({}),
                (None, None) => json!({"role": "assistant", "content": ""}),
                (Some(t), None) => json!({"content": t}),
            };
            (
                "chat.completion.chunk",
                json!({"index": 0, "delta": delta, "finish_reason": finish}),
            )
        }
        Shape::Completion => (
            "text_completion",
            json!({"index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": finish}),
        ),
    };
    json!({
        "id": st.id,
        "object": object,
        "created": st.created,
        "model": st.profile.id(),
        "choices": [choice],
    })
}

fn data(v: &Value) -> Event {
    Event::default().data(v.to_string())
}

/// Admits the search, then answers with the event stream (a refusal is a plain JSON error).
pub(crate) async fn respond(
    app: &Arc<App>,
    shape: Shape,
    question: String,
    search: SearchConfig,
    profile: Profile,
    tree: bool,
) -> Result<Response, ApiError> {
    let tokens = prompt_tokens(app, &question);
    let slot = admit(app).await?;
    let reply = submit(app, &slot, question, search.clone())?;
    let prefix = if shape == Shape::Chat {
        "chatcmpl"
    } else {
        "cmpl"
    };
    let mut st = State {
        app: app.clone(),
        shape,
        prompt_tokens: tokens,
        queue: VecDeque::new(),
        reply: Some(reply),
        slot,
        search,
        profile,
        tree,
        id: format!("{prefix}-{}", app.next_id()),
        created: now(),
    };
    if shape == Shape::Chat {
        let first = chunk(&st, None, None);
        st.queue.push_back(data(&first));
    }
    let events = futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(e) = st.queue.pop_front() {
                return Some((Ok::<Event, Infallible>(e), st));
            }
            let reply = st.reply.as_mut()?;
            tokio::select! {
                r = reply => {
                    st.reply = None;
                    match report_of(r) {
                        Ok(report) => {
                            st.slot.answered(&report);
                            let (text, ext) =
                                solution(&st.app, &st.id, &report, &st.search, st.profile, st.tree);
                            for piece in text.split_inclusive('\n') {
                                let c = chunk(&st, Some(piece), None);
                                st.queue.push_back(data(&c));
                            }
                            let mut last = chunk(&st, None, Some("stop"));
                            last["usage"] = usage(&report, st.prompt_tokens);
                            last["ponder"] = ext;
                            st.queue.push_back(data(&last));
                        }
                        Err(e) => st.queue.push_back(data(&e.body())),
                    }
                    st.queue.push_back(Event::default().data("[DONE]"));
                }
                () = tokio::time::sleep(Duration::from_millis(500)) => {
                    let n = st.slot.simulations();
                    return Some((Ok(Event::default().comment(format!("searching: {n} simulations"))), st));
                }
            }
        }
    });
    Ok(Sse::new(events).into_response())
}
