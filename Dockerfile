# syntax=docker/dockerfile:1
# data-service: install the package with its dependencies into a virtualenv in a build
# stage, then copy only that virtualenv into the runtime image (no wheels, no build
# tools, no dead layer), which runs as a non-root user. `make image-test` builds it with
# podman and smoke-tests it against CouchDB 3.5.2 (docs/deployment.md).

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/data-service
WORKDIR /src
COPY pyproject.toml setup.py README.md constraints.txt ./
COPY api_spec ./api_spec
COPY data_service ./data_service
# `pip install .` builds the wheel `make dist-check` checks in CI. With WHEELS (a directory
# the build mounts, holding that wheel and its dependencies: `make image-test` makes it)
# nothing is downloaded here. Left behind: pip and setuptools (nothing installs at run
# time) and the files Swagger UI's package ships but /_docs never serves (source maps,
# the ES-module builds).
ARG WHEELS=
RUN if [ -n "$WHEELS" ]; then \
        /opt/data-service/bin/pip install --no-index --find-links="$WHEELS" -c constraints.txt data-service; \
    else \
        /opt/data-service/bin/pip install -c constraints.txt .; \
    fi \
    && /opt/data-service/bin/pip uninstall --yes --quiet pip setuptools \
    && cd /opt/data-service/lib/python3*/site-packages/swagger_ui_bundle/vendor/swagger-ui-* \
    && rm -f -- *.map swagger-ui-es-bundle*.js swagger-ui.js swagger-ui-standalone-preset.js

FROM python:3.11-slim
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="data-service" \
      org.opencontainers.image.description="Sidecar HTTP data-access service in front of CouchDB: typed, validated, protected, signed documents" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/data-service/bin:$PATH
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin dataservice \
    && mkdir -p /etc/data-service/keys && chown 10001 /etc/data-service/keys && chmod 700 /etc/data-service/keys
COPY --from=build /opt/data-service /opt/data-service
COPY docker/healthcheck.py /opt/data-service/bin/data-service-healthcheck
COPY models /etc/data-service/models
# Keysets live on a volume (or a Secret) mounted here; `data-service keys create` fills it.
VOLUME ["/etc/data-service/keys"]
USER 10001
# Loopback only by default: the application shares this container's network namespace
# (compose: network_mode "service:data-service"; Kubernetes: the same pod) and calls
# 127.0.0.1:8080. Listening wider needs --api-token-file (serve refuses otherwise).
EXPOSE 8080
# Asks the port (and address) the running `serve` was given, whatever they are.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["data-service-healthcheck"]
ENTRYPOINT ["data-service"]
CMD ["serve", "--listen=127.0.0.1", "--port=8080", "--models=/etc/data-service/models/sample.yaml", \
     "--keys-dir=/etc/data-service/keys"]
