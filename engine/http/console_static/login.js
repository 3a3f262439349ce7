"use strict";
// The console's login page: posts the credentials as JSON to /console/login, which sets the
// HttpOnly session cookie; then the console itself is loaded. No framework, no build step.

document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("login-error");
  const button = document.getElementById("sign-in");
  error.textContent = "";
  button.disabled = true;
  try {
    const response = await fetch("/console/login", {
      method: "POST",
      headers: {"Content-Type": "application/json", "Accept": "application/json"},
      body: JSON.stringify({
        email: document.getElementById("email").value,
        password: document.getElementById("password").value,
      }),
      credentials: "same-origin",
      cache: "no-store",
    });
    if (response.ok) {
      location.replace("/console");
      return;
    }
    const payload = await response.json().catch(() => null);
    error.textContent = payload && payload.error ? payload.error.message : `sign-in failed (HTTP ${response.status})`;
  } catch (exc) {
    error.textContent = `the engine cannot be reached: ${exc.message}`;
  } finally {
    button.disabled = false;
  }
});
