CREATE TABLE "installation_environment" (
	"id" text PRIMARY KEY NOT NULL,
	"environment" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
