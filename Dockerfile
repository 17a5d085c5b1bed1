FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ wget ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY . .
USER node
ENV NODE_ENV=production DATA_DIR=/tmp/provisioning
EXPOSE 3000
CMD ["npx", "tsx", "scripts/start.ts"]
