# FreeSWITCH 1.10.12 built by the harness's own script from ../shared/peers/freeswitch, with
# its test configuration and the extensions tests/peers/freeswitch.py adds; not run by CI.
FROM debian:bookworm
COPY --from=shared peers/freeswitch /src/freeswitch
COPY --from=templates extensions.xml /src/extensions.xml
RUN apt-get update \
    && PREFIX=/opt/freeswitch WORK=/tmp/fs-build /src/freeswitch/build.sh deps unpack build-deps configure build install config \
    && rm -rf /tmp/fs-build /var/lib/apt/lists/*
# the test extensions go before the catch-all 404, as tests/peers/freeswitch.py does
RUN awk -v extra=/src/extensions.xml \
      '/<extension name="not_found">/ { while ((getline line < extra) > 0) print line } { print }' \
      /opt/freeswitch/conf/dialplan/test.xml >/tmp/test.xml \
    && mv /tmp/test.xml /opt/freeswitch/conf/dialplan/test.xml
RUN mkdir -p /tmp/fs-log /tmp/fs-db /tmp/fs-run /tmp/fs-temp
