// Starts Swagger UI on the API's own document. A separate file because the page's
// Content-Security-Policy allows no inline script. "Authorize" takes a bearer key
// or an X-API-Key; the key stays in this page (not stored).
"use strict";
window.addEventListener("DOMContentLoaded", () => {
  window.ui = window.SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    tryItOutEnabled: false,
  });
});
