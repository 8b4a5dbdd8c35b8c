FROM python:3.11-slim
WORKDIR /srv
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
RUN pip install --no-cache-dir .
# The app finds alembic.ini and migrations/ beside the package.
ENV PYTHONPATH=/srv
USER nobody
EXPOSE 8000
CMD ["runplane", "serve", "--host", "0.0.0.0", "--port", "8000"]
