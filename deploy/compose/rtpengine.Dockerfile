# rtpengine in userspace from Debian's package (the one scripts/bootstrap installs); the
# project publishes no official image. Not run by CI (docs/testing.md).
FROM debian:bookworm
RUN apt-get update && apt-get install -y --no-install-recommends rtpengine-daemon \
    && rm -rf /var/lib/apt/lists/*
