# voicegw built from this repository (deploy/compose/docker-compose.yml; not run by CI).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends espeak-ng \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/voicegw
COPY . /opt/voicegw
RUN pip install --no-cache-dir /opt/voicegw
CMD ["voicegw", "run", "--config", "/etc/voicegw/voicegw.yaml"]
