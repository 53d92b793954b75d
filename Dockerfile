# love-host: build the host and the three plugins, then a slim runtime image.
#   docker build -t love-host .
#   docker run -d --restart unless-stopped -e WEBSOCKET_HOST=love-nginx/manager/ws/subscription \
#       -e PROCESS_CONNECTION_PASS=... -e LOVE_CSC_PRODUCER="Watcher ScriptQueue:1 ATDome" love-host
# Restart policy: a plugin that crashes the process (a segfault in its code) ends the container
# with a non-zero status; `--restart unless-stopped` (compose: `restart: unless-stopped`) starts
# it again, and the new start leaves the crashing plugin file quarantined (recorded in
# /var/lib/love-host, which a restart of the same container keeps; mount a volume there to keep
# it across re-creation too).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# Two invocations: `--bin` would restrict every selected package to its binaries and leave
# the plugin libraries unbuilt.
RUN cargo build --release --locked -p love-host --bin love-host \
    && cargo build --release --locked -p love-plugin-csc -p love-plugin-scriptqueue -p love-plugin-watcher \
    && mkdir -p /out/plugins \
    && cp target/release/love-host /out/ \
    && cp target/release/liblove_plugin_csc.so target/release/liblove_plugin_scriptqueue.so \
          target/release/liblove_plugin_watcher.so /out/plugins/

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /nonexistent love \
    && install -d -o love -g love -m 700 /var/lib/love-host
COPY --from=build /out/love-host /usr/local/bin/love-host
# Plugins are owned by root and not writable by the service user: love-host refuses a plugin
# directory writable by others, and a hot deployment is a rename into this directory.
COPY --from=build /out/plugins/ /opt/love/plugins/
RUN chmod 755 /opt/love/plugins && chmod 644 /opt/love/plugins/*.so
ENV LOVE_PLUGIN_DIR=/opt/love/plugins \
    LOVE_STATE_DIR=/var/lib/love-host \
    LOVE_ADMIN_ADDR=0.0.0.0:9100
EXPOSE 9100
USER love
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/love-host"]
# Components come from LOVE_CSC_PRODUCER (as the original's image) or the command line.
CMD []
HEALTHCHECK --interval=30s --timeout=3s CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9100 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -1 <&3 | grep -q ' 200 '"]
