#!/bin/sh
# Renders the harness's Asterisk config (tests/peers/templates/asterisk, mounted on
# /templates) the way tests/peers/asterisk.py does, then runs Asterisk in the foreground.
# Ports and secrets come from the environment (deploy/compose/docker-compose.yml).
set -eu
RUN=${RUN:-/var/lib/vg-asterisk}
PREFIX=${PREFIX:-/opt/asterisk}
TEMPLATES=${TEMPLATES:-/templates}
MODULES=$(dirname "$(find "$PREFIX" -name chan_pjsip.so | head -n 1)")
for sub in etc log run lib spool cache; do mkdir -p "$RUN/$sub"; done
for template in "$TEMPLATES"/*.conf; do
  sed -e "s|@RUN@|$RUN|g" -e "s|@MODULES@|$MODULES|g" -e "s|@SBIN@|$PREFIX/sbin|g" \
      -e "s|@SIP_PORT@|$SIP_PORT|g" -e "s|@VOICEGW_PORT@|$VOICEGW_PORT|g" \
      -e "s|@RTP_START@|$RTP_START|g" -e "s|@RTP_END@|$RTP_END|g" \
      -e "s|@AGENT_PASSWORD@|$AGENT_PASSWORD|g" -e "s|@AMI_PORT@|$AMI_PORT|g" \
      -e "s|@AMI_SECRET@|$AMI_SECRET|g" "$template" >"$RUN/etc/$(basename "$template")"
done
if grep -l '@[A-Z_]*@' "$RUN"/etc/*.conf; then echo "asterisk-render: unreplaced placeholders" >&2; exit 1; fi
[ -z "${RENDER_ONLY:-}" ] || exit 0
exec "$PREFIX/sbin/asterisk" -C "$RUN/etc/asterisk.conf" -f -n
