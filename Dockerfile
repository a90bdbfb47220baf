# flowengine: `docker build -t flowengine . && docker run -p 8000:8000 flowengine`
# Many instances: add -e FLOWENGINE_REDIS_URL=redis://redis:6379/0 (see docs/deployment.md).
# Agents: docker exec -it <container> flowengine agents add alice --teams general,orders
# (kept in Redis with FLOWENGINE_REDIS_URL, else in /app/agents.json: mount a volume to keep it).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY flowengine ./flowengine
RUN pip install --no-cache-dir . && useradd --create-home --uid 10001 flowengine \
    && chown flowengine /app

COPY flows ./flows
COPY widget ./widget
COPY handoff.yaml ./
USER flowengine

EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"

# Flows are validated at start: a broken flows/ directory stops the container with the errors.
CMD ["flowengine", "serve", "--host", "0.0.0.0", "--port", "8000", "--flows", "flows"]
