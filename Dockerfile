# syntax=docker/dockerfile:1
# Build stage: compile TypeScript with the dev dependencies.
FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY plugins ./plugins
RUN npm run build

# Runtime stage: production dependencies and compiled code only, as a non-root user. No
# configuration file is baked in: production is configured with COUNTERSIGN_* variables
# (or a file named by COUNTERSIGN_CONFIG), see the README's production checklist.
FROM node:22-bookworm-slim
ENV NODE_ENV=production COUNTERSIGN_MODE=production COUNTERSIGN_HTTP_HOST=0.0.0.0 COUNTERSIGN_DATA_DIR=/var/lib/countersign
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# The console's, the portal's and the web app's static files are not compiled; they sit beside the compiled modules.
COPY src/fronts/console/static ./dist/src/fronts/console/static
COPY src/fronts/app/static ./dist/src/fronts/app/static
COPY src/fronts/account/static ./dist/src/fronts/account/static
COPY bin ./bin
# The one place the server may write (the uid is the base image's node user).
RUN mkdir -p /var/lib/countersign && chown 1000:1000 /var/lib/countersign
VOLUME ["/var/lib/countersign"]
USER node
EXPOSE 8080 1812/udp 1813/udp
HEALTHCHECK --interval=15s --timeout=3s CMD node -e "fetch('http://127.0.0.1:'+(process.env.COUNTERSIGN_HTTP_PORT||8080)+'/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["node", "bin/countersign.js"]
CMD ["serve"]
