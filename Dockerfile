# One image for the webhook and the speaker: `l2guard webhook ...` or `l2guard speaker ...`.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY l2core ./l2core
COPY l2guard ./l2guard
COPY webhook ./webhook
COPY speaker ./speaker
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# The speaker needs CAP_NET_RAW (granted in its DaemonSet), not root; the webhook needs nothing.
USER 65532:65532
ENTRYPOINT ["l2guard"]
CMD ["--help"]
