# syntax=docker/dockerfile:1
# data-service: build the wheel (the same `pip wheel .` that `make dist-check` runs in CI),
# then install it with its dependencies into a slim runtime image as a non-root user.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md constraints.txt ./
COPY api_spec ./api_spec
COPY data_service ./data_service
RUN pip wheel --no-cache-dir --wheel-dir /wheels -c constraints.txt .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin dataservice
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels data-service \
    && rm -rf /wheels
COPY models /etc/data-service/models
# Keysets live on a volume (or secret) mounted here; `data-service keys create` fills it.
RUN mkdir -p /etc/data-service/keys && chown 10001 /etc/data-service/keys && chmod 700 /etc/data-service/keys
VOLUME ["/etc/data-service/keys"]
USER 10001
# Loopback only by default: the application shares this container's network namespace
# (compose: network_mode "service:data-service"; Kubernetes: the same pod) and calls
# 127.0.0.1:8080. Listening wider needs --api-token-file (serve refuses otherwise).
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/_health', timeout=2).status != 200)"]
ENTRYPOINT ["data-service"]
CMD ["serve", "--listen=127.0.0.1", "--port=8080", "--models=/etc/data-service/models/sample.yaml", \
     "--keys-dir=/etc/data-service/keys"]
