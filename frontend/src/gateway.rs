//! BuildKit's gateway API over the frontend process's stdio: the only module that knows gRPC.
//!
//! BuildKit serves cleartext HTTP/2 (prior knowledge) on two pipes: it writes to our stdin and
//! reads our stdout. Nothing else may ever be written to stdout. The transport is an argument,
//! so tests run the same client against a fake BuildKit over an in-memory duplex.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

use hyper_util::rt::TokioIo;
use prost::Message;
use squash_proto::gateway::{self, llb_bridge_client::LlbBridgeClient};
use squash_proto::{pb, rpc};
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::transport::{Channel, Endpoint, Uri};

/// BuildKit's own limit; tonic's default (4 MiB) is too small for large results.
const MAX_MESSAGE: usize = 16 << 20;

/// A failed gateway call, with the status BuildKit sent (details kept for `Return`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{call}: {}", status.message)]
pub struct GatewayError {
    /// The RPC that failed.
    pub call: &'static str,
    /// What BuildKit answered.
    pub status: rpc::Status,
}

/// A client of BuildKit's `LLBBridge`.
#[derive(Debug, Clone)]
pub struct Gateway {
    client: LlbBridgeClient<Channel>,
}

impl Gateway {
    /// Speaks HTTP/2 over `io`, which is used for exactly one connection.
    pub async fn connect<IO>(io: IO) -> Result<Self, GatewayError>
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let once = Arc::new(Mutex::new(Some(io)));
        let connector = tower::service_fn(move |_: Uri| {
            let io = once.lock().ok().and_then(|mut slot| slot.take());
            async move {
                io.map(TokioIo::new).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotConnected,
                        "the stdio connection to BuildKit is gone and cannot be reopened",
                    )
                })
            }
        });
        let channel = Endpoint::from_static("http://localhost")
            .connect_with_connector(connector)
            .await
            .map_err(|e| GatewayError {
                call: "connect",
                status: rpc::Status {
                    code: tonic::Code::Unavailable as i32,
                    message: e.to_string(),
                    details: vec![],
                },
            })?;
        let client = LlbBridgeClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        Ok(Gateway { client })
    }

    /// The engine's capabilities and workers.
    pub async fn ping(&mut self) -> Result<gateway::PongResponse, GatewayError> {
        call("Ping", self.client.ping(gateway::PingRequest {})).await
    }

    /// The frontend inputs of the build (e.g. a Dockerfile given on stdin), by name.
    pub async fn inputs(&mut self) -> Result<BTreeMap<String, pb::Definition>, GatewayError> {
        call("Inputs", self.client.inputs(gateway::InputsRequest {}))
            .await
            .map(|r| r.definitions)
    }

    /// Solves and returns the result (with refs carrying their definitions).
    pub async fn solve(
        &mut self,
        mut req: gateway::SolveRequest,
    ) -> Result<gateway::Result, GatewayError> {
        req.allow_result_return = true;
        req.allow_result_array_ref = true;
        let res = call("Solve", self.client.solve(req)).await?;
        Ok(res.result.unwrap_or_default())
    }

    /// The contents of one file of a solved ref.
    pub async fn read_file(
        &mut self,
        reference: &str,
        path: &str,
    ) -> Result<Vec<u8>, GatewayError> {
        let req = gateway::ReadFileRequest {
            r#ref: reference.into(),
            file_path: path.into(),
            range: None,
        };
        call("ReadFile", self.client.read_file(req))
            .await
            .map(|r| r.data)
    }

    /// The entries of one directory of a solved ref (not below it), with their metadata.
    pub async fn read_dir(
        &mut self,
        reference: &str,
        dir: &str,
    ) -> Result<Vec<squash_proto::fsutil::types::Stat>, GatewayError> {
        let req = gateway::ReadDirRequest {
            r#ref: reference.into(),
            dir_path: dir.into(),
            include_pattern: String::new(),
        };
        call("ReadDir", self.client.read_dir(req))
            .await
            .map(|r| r.entries)
    }

    /// The config of an image reference (`name@sha256:...`) at `platform`, resolved by the
    /// engine (its image store first, as for the Dockerfile frontend's own `FROM`).
    pub async fn resolve_image_config(
        &mut self,
        reference: &str,
        platform: Option<pb::Platform>,
    ) -> Result<Vec<u8>, GatewayError> {
        let req = gateway::ResolveImageConfigRequest {
            r#ref: reference.into(),
            platform,
            resolve_mode: "default".into(),
            log_name: format!("squash: describe base {reference}"),
            ..Default::default()
        };
        call("ResolveImageConfig", self.client.resolve_image_config(req))
            .await
            .map(|r| r.config)
    }

    /// Sends the build's outcome. BuildKit accepts exactly one `Return` per run.
    pub async fn finish(&mut self, req: gateway::ReturnRequest) -> Result<(), GatewayError> {
        call("Return", self.client.r#return(req)).await.map(|_| ())
    }
}

async fn call<T>(
    name: &'static str,
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, GatewayError> {
    fut.await
        .map(tonic::Response::into_inner)
        .map_err(|status| GatewayError {
            call: name,
            status: to_rpc(&status),
        })
}

/// The status of an error of our own, as BuildKit's own frontends send theirs (code `Unknown`):
/// the message is shown to the user as it is.
pub fn error_status(message: String) -> rpc::Status {
    rpc::Status {
        code: tonic::Code::Unknown as i32,
        message,
        details: vec![],
    }
}

/// The `google.rpc.Status` behind a tonic status: BuildKit sends the full status (with details
/// that carry the Dockerfile location of an error) in `grpc-status-details-bin`.
pub fn to_rpc(status: &tonic::Status) -> rpc::Status {
    if !status.details().is_empty() {
        if let Ok(full) = rpc::Status::decode(status.details()) {
            return full;
        }
    }
    rpc::Status {
        code: status.code() as i32,
        message: status.message().to_string(),
        details: vec![],
    }
}

/// The process's stdin and stdout as one async stream. Pipes (what BuildKit gives) are used
/// directly; anything else goes through tokio's blocking stdio threads.
pub fn stdio() -> Box<dyn Stdio> {
    use std::os::fd::BorrowedFd;
    use tokio::net::unix::pipe;
    // Duplicates, never the fds themselves: a failed conversion drops what it was given, and
    // closing fd 0 or 1 would cut the connection.
    // SAFETY: fds 0 and 1 are open for the life of the process.
    let (fd0, fd1) = unsafe { (BorrowedFd::borrow_raw(0), BorrowedFd::borrow_raw(1)) };
    let pipes = fd0
        .try_clone_to_owned()
        .and_then(pipe::Receiver::from_owned_fd)
        .and_then(|r| {
            fd1.try_clone_to_owned()
                .and_then(pipe::Sender::from_owned_fd)
                .map(|w| tokio::io::join(r, w))
        });
    match pipes {
        Ok(io) => Box::new(io),
        Err(_) => Box::new(tokio::io::join(tokio::io::stdin(), tokio::io::stdout())),
    }
}

/// A bidirectional byte stream to BuildKit.
pub trait Stdio: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stdio for T {}
