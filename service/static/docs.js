// /docs: Swagger UI on /openapi.json. "Try it out" calls this origin (the description names
// no servers); "Authorize" takes an API key as a Bearer token and keeps it across reloads.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: true,
  displayRequestDuration: true,
  validatorUrl: null, // no call to an outside validator: the page works offline
  presets: [SwaggerUIBundle.presets.apis],
});
