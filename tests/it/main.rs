//! Passerelle's integration tests: a real gateway over real HTTP on 127.0.0.1, with real mock
//! recipient servers. One file per capability; shared helpers in `support`.

mod support;

mod access;
mod alerting;
mod architecture;
mod audit;
mod backup;
mod batch;
mod command_line;
mod completion;
mod config_check;
mod console;
mod crash;
mod dead_letters;
mod delivery;
mod demo;
mod discovery;
mod edge;
mod evolution;
mod explain;
mod hostile;
mod inbox;
mod integrity;
mod investigate;
mod isolation;
mod limits;
mod nats;
mod notices;
mod oidc;
mod openapi;
mod operators;
mod permissions;
mod postgres;
mod push;
mod receipts;
mod rejections;
mod reload;
mod requests;
mod roles;
mod sealed;
mod signature;
mod spans;
mod tls;
mod validation;
mod views;
