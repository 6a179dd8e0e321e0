# syntax=docker/dockerfile:1
# The gantry worker image: compiled TypeScript, the prebuilt workflow bundle, production dependencies only,
# git and ssh for the release steps, running as the unprivileged `node` user.
#
#   docker build -t gantry-worker .      (or `docker compose build`, see docker-compose.yml)

ARG NODE_IMAGE=node:20.20.2-bookworm-slim

# --- production dependencies only ---
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Install scripts are not needed: the Temporal core bridge and SWC ship prebuilt binaries in their packages.
# `npm install` (not `npm ci`): the lock holds only the Linux builds of SWC's optional per-platform packages,
# and `npm ci` refuses a lock without the others. Versions still come from the lock.
RUN npm install --omit=dev --ignore-scripts --no-audit --no-fund

# --- compile the sources and bundle the workflow code ---
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm install --ignore-scripts --no-audit --no-fund
COPY . .
RUN npm run build

# --- runtime ---
FROM ${NODE_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/gantry \
 && chown node:node /var/lib/gantry
WORKDIR /app
ENV NODE_ENV=production \
    GANTRY_STATE_DIR=/var/lib/gantry \
    MALLOC_ARENA_MAX=2
COPY --from=deps --chown=root:root /app/node_modules ./node_modules
COPY --from=build --chown=root:root /app/dist ./dist
COPY --chown=root:root package.json ./
COPY --chown=root:root bin ./bin
COPY --chown=root:root deploy/worker-healthcheck.js ./deploy/worker-healthcheck.js
USER node
VOLUME ["/var/lib/gantry"]
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["node", "deploy/worker-healthcheck.js"]
CMD ["node", "--max-semi-space-size=4", "dist/src/worker.js"]
